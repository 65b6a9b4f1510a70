"""The live pages: one server-sent event stream per open page, which reads what the page shows through the
API, renders each part and sends only the parts that changed (htmx swaps each into the element named by its
event). The browser never polls; a failover shows within `OVERVIEW_TICK`."""

import asyncio
import hashlib
import logging
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from markupsafe import Markup

from tandem.console import views
from tandem.console.rendering import Renderer
from tandem.console.session import ConsoleUser
from tandem.console.views import Caller

log = logging.getLogger("tandem.console")
OVERVIEW_TICK = 0.25
"""Seconds between reads of the overview's failover state (the traffic groups and events)."""
CLUSTER_EVERY = 1.0
"""Seconds between reads of the rest of the overview (devices, groups, peers, agents)."""
TRAFFIC_TICK = 1.0
"""Seconds between reads of the counters (a sparkline point each)."""
KEEPALIVE = 15.0
MAX_STREAMS = 32
"""Open live pages a device serves at once (each costs a read of the page every tick)."""
MAX_STREAMS_PER_USER = 6
UNCLAIMED_FOR = 10.0
View = TypeVar("View", views.Overview, views.Traffic)
OVERVIEW_PARTS = ("summary", "devices", "groups", "traffic-groups", "events", "peers", "agents", "problems")
TRAFFIC_PARTS = ("virtuals", "pools")
LINE_BREAK = re.compile(r"\r\n|\r|\n")
"""What ends a line of server-sent events (and only that: other breaks stay in the data)."""
SHOWN_FOR = 60.0
MAX_SHOWN = 1000


class Streams:
    """The open streams: at most `MAX_STREAMS` on the device and `MAX_STREAMS_PER_USER` of one user (so that no
    user or script holds all of them). A slot is taken when the stream is answered and given back when it ends,
    or after `UNCLAIMED_FOR` seconds if its body never starts (the browser went first)."""

    def __init__(self) -> None:
        self._slots: dict[int, tuple[str, float | None]] = {}
        """By slot: its user, and when it was taken while its body has not started (None once it has)."""
        self._next = 0

    def take(self, username: str) -> int | None:
        """A slot for a stream of `username`, or None when none is free."""
        now = time.monotonic()
        self._slots = {slot: (user, taken) for slot, (user, taken) in self._slots.items()
                       if taken is None or taken > now - UNCLAIMED_FOR}
        mine = sum(user == username for user, _ in self._slots.values())
        if len(self._slots) >= MAX_STREAMS or mine >= MAX_STREAMS_PER_USER:
            return None
        self._next += 1
        self._slots[self._next] = (username, now)
        return self._next

    async def held(self, slot: int, stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """`stream`, holding `slot` while it runs."""
        user, _ = self._slots.get(slot, ("", None))
        self._slots[slot] = (user, None)
        try:
            async for chunk in stream:
                yield chunk
        finally:
            self._slots.pop(slot, None)


def digest(html: str) -> str:
    """A short digest of a part, by which a stream knows what the page already shows."""
    return hashlib.blake2b(html.encode(), digest_size=8).hexdigest()


class Shown:
    """What each page rendered (its parts' digests), under a token its stream's URL carries: the stream sends
    only what differs from it. A token serves once, so a stream that reconnects sends every part again (what
    the page shows is unknown by then). Tokens older than `SHOWN_FOR` seconds, or beyond `MAX_SHOWN`, go."""

    def __init__(self) -> None:
        self._pages: OrderedDict[str, tuple[float, dict[str, str]]] = OrderedDict()

    def remember(self, parts: dict[str, Markup]) -> str:
        now = time.monotonic()
        while self._pages and (len(self._pages) >= MAX_SHOWN
                               or next(iter(self._pages.values()))[0] < now - SHOWN_FOR):
            self._pages.popitem(last=False)
        token = secrets.token_urlsafe(12)
        self._pages[token] = (now, {name: digest(html) for name, html in parts.items()})
        return token

    def take(self, token: str) -> dict[str, str]:
        """What the page of `token` shows (nothing when the token is unknown, used or too old)."""
        found = self._pages.pop(token, None)
        return found[1] if found is not None and found[0] >= time.monotonic() - SHOWN_FOR else {}


def event(name: str, html: str) -> bytes:
    """One server-sent event: its name and the part's HTML as its data lines."""
    lines = "".join(f"data: {line}\n" for line in LINE_BREAK.split(html))
    return f"event: {name}\n{lines}\n".encode()


def overview_parts(renderer: Renderer, overview: views.Overview, user: ConsoleUser) -> dict[str, Markup]:
    return {name: renderer.part(f"part_{name}.html", o=overview, user=user) for name in OVERVIEW_PARTS}


def traffic_parts(renderer: Renderer, traffic: views.Traffic, user: ConsoleUser) -> dict[str, Markup]:
    return {name: renderer.part(f"part_{name}.html", t=traffic, user=user) for name in TRAFFIC_PARTS}


async def _changes(read: Callable[[], Awaitable[View]], render: Callable[[View], dict[str, Markup]],
                   tick: float, seen: dict[str, str]) -> AsyncIterator[bytes]:
    """Each tick: read the page's view and, when it differs from the last, render it and send the parts that
    differ from what the page shows (`seen`, then what was sent: digests by part); end once the session has
    (the API answered 401), with a `signed-out` event."""
    sent = dict(seen)
    shown: View | None = None
    quiet_since = time.monotonic()
    failing = False
    while True:
        try:
            view = await read()
            changed = render(view).items() if view != shown else ()
        except Exception:  # the page stays as it is; said once in the log, and tried again next tick
            if not failing:
                log.exception("a live page could not be read or rendered")
            failing = True
            await asyncio.sleep(tick)
            continue
        failing = False
        if view.signed_out:
            yield event("signed-out", "")
            return
        shown = view
        for name, html in changed:
            if sent.get(name) != (shown_digest := digest(html)):
                sent[name] = shown_digest
                quiet_since = time.monotonic()
                yield event(name, html)
        if time.monotonic() - quiet_since > KEEPALIVE:
            quiet_since = time.monotonic()
            yield b": keep-alive\n\n"
        await asyncio.sleep(tick)


class OverviewReads:
    """The overview as one stream reads it: the failover state every tick, the rest every `CLUSTER_EVERY`."""

    def __init__(self, caller: Caller) -> None:
        self._caller = caller
        self._cluster: views.ClusterPart | None = None
        self._cluster_at = 0.0

    async def __call__(self) -> views.Overview:
        if self._cluster is None or time.monotonic() - self._cluster_at >= CLUSTER_EVERY:
            self._cluster, failover = await asyncio.gather(views.cluster_part(self._caller),
                                                           views.failover_part(self._caller))
            self._cluster_at = time.monotonic()
        else:
            failover = await views.failover_part(self._caller)
        return views.Overview(self._cluster, failover)


def overview_stream(caller: Caller, user: ConsoleUser, renderer: Renderer, seen: dict[str, str]
                    ) -> AsyncIterator[bytes]:
    return _changes(OverviewReads(caller), lambda o: overview_parts(renderer, o, user), OVERVIEW_TICK, seen)


def traffic_stream(caller: Caller, user: ConsoleUser, renderer: Renderer, partition: str | None,
                   after: str | None, seen: dict[str, str]) -> AsyncIterator[bytes]:
    rates = views.Rates()
    return _changes(lambda: views.traffic(caller, partition, after, rates),
                    lambda t: traffic_parts(renderer, t, user), TRAFFIC_TICK, seen)
