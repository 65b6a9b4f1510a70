"""The interfaces of this host as netlink tells them (RTM_NEWLINK and RTM_DELLINK events, not polling): what the
interface trackers judge. A thread of its own reads the netlink socket (pyroute2 blocks) and hands each change
to the event loop."""

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("tandem.failover.links")

RETRY = 1.0
"""Seconds before listening again after the netlink socket failed."""
IFF_UP = 0x1
IFF_LOWER_UP = 0x10000
"""The driver signals carrier (`ip link`'s LOWER_UP)."""


@dataclass(frozen=True)
class Link:
    up: bool
    """Administratively up (`ip link set ... up`)."""
    carrier: bool

    @property
    def why_down(self) -> str:
        """Why the interface is not fit to carry traffic ("" if it is)."""
        if not self.up:
            return "administratively down"
        return "" if self.carrier else "no carrier"


class Links:
    """Every interface by name, kept current from netlink; `on_change()` is called (in the event loop) once the
    first listing is in, and whenever an interface changes, appears or goes."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        self._on_change = on_change
        self.links: dict[str, Link] = {}
        self.ready = False
        """The first listing is in."""
        self.error: str | None = None
        """Why the interfaces cannot be watched (None: they are)."""
        self._loop = asyncio.get_running_loop()
        self._netlink: Any = None
        self._stopped = False
        self._thread = threading.Thread(target=self._watch, name="links", daemon=True)
        self._thread.start()

    def why_down(self, name: str) -> str:
        """Why interface `name` is down ("" if it is up with carrier)."""
        if not self.ready:
            return "not checked yet"
        if self.error is not None:
            return f"cannot watch the interfaces: {self.error}"
        link = self.links.get(name)
        return "no such interface" if link is None else link.why_down

    def stop(self) -> None:
        self._stopped = True
        if self._netlink is not None:
            with contextlib.suppress(Exception):
                self._netlink.close()  # the thread's read fails and it ends

    def _watch(self) -> None:
        """Listen (again after `RETRY` seconds when the socket fails: say its buffer overflowed), until stopped."""
        while not self._stopped:
            try:
                from pyroute2 import IPRoute  # slow to import: only where an interface is tracked
                from pyroute2.netlink.rtnl import RTMGRP_LINK

                self._netlink = netlink = IPRoute()
                if self._stopped:  # stopped while it opened: stop() could not close it
                    netlink.close()
                    return
                netlink.bind(groups=RTMGRP_LINK)  # first: a change during the listing is not lost
                self._took(netlink.get_links(), listing=True)
                while not self._stopped:
                    self._took(netlink.get())
            except Exception as error:  # no netlink here, a read failed, or closed by stop()
                if self._stopped:
                    return
                log.warning("cannot watch the interfaces: %s (again in %g s)", error, RETRY)
                self._loop.call_soon_threadsafe(self._failed, str(error))
                with contextlib.suppress(Exception):
                    self._netlink.close()
                time.sleep(RETRY)

    def _took(self, messages: object, listing: bool = False) -> None:
        changes = {}
        for message in messages:  # type: ignore[attr-defined]
            name = message.get_attr("IFLA_IFNAME")
            if name is None or message.get("event") not in ("RTM_NEWLINK", "RTM_DELLINK"):
                continue
            flags = message["flags"]
            changes[name] = None if message["event"] == "RTM_DELLINK" else Link(
                bool(flags & IFF_UP), bool(flags & IFF_LOWER_UP))
        if changes or listing:
            self._loop.call_soon_threadsafe(self._apply, changes, listing)

    def _apply(self, changes: dict[str, Link | None], listing: bool) -> None:
        changed = listing
        for name, link in changes.items():
            if self.links.get(name) != link:
                changed = True
                if link is None:
                    self.links.pop(name, None)
                else:
                    self.links[name] = link
        self.ready = self.ready or listing
        if listing:
            self.error = None  # listening (again)
        if changed:
            self._on_change()

    def _failed(self, error: str) -> None:
        self.error, self.ready = error, True
        self._on_change()
