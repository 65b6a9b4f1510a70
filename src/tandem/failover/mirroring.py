"""Connection mirroring: the kernel's connection tracking state of this device copied to its peer, so that after a
takeover the new active device's NAT already knows each connection (`conntrackd`, the netfilter project's
daemon, in its FTFW mode: reliable, resent on loss).

The failover process runs one `conntrackd` while a traffic group of its group mirrors (`mirroring: true`) and
the group has one other member: UDP between the two devices' peer channel addresses, bound to the interface
that reaches the peer (the mirror traffic stays on that link; conntrackd does not authenticate it). Connections
from, to or through the devices' own and floating addresses are not mirrored (management, heartbeats, proxied
traffic: only connections the kernel translates or forwards are). Before this device holds the addresses of a
mirrored traffic group it commits the connections learned from the peer into its kernel (`commit`), as
keepalived's notify scripts run `conntrackd -c`.
"""

import asyncio
import contextlib
import logging
import os
import re
import signal
import subprocess
from collections.abc import Coroutine
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path
from typing import Any

from tandem import ipc

log = logging.getLogger("tandem.failover.mirroring")

PORT = 3780
"""conntrackd's UDP port (its documented default)."""
CLIENT_TIMEOUT = 5.0
"""Seconds a `conntrackd` client call may take."""
RESTART_PAUSE = 1.0

CONFIG = """Sync {{
  Mode FTFW {{
    DisableExternalCache Off
    StartupResync on
  }}
  UDP {{
    {family}_address {me}
    {family}_Destination_Address {peer}
    Port {port}
    Interface {interface}
    Checksum on
  }}
}}
General {{
  HashSize 32768
  HashLimit 262144
  LogFile {directory}/conntrackd.log
  Syslog off
  LockFile {directory}/conntrackd.lock
  UNIX {{
    Path {directory}/conntrackd.ctl
  }}
  Filter From Userspace {{
    Protocol Accept {{
      TCP
      UDP
    }}
    Address Ignore {{
{ignored}
    }}
  }}
}}
"""


@dataclass(frozen=True)
class MirrorLink:
    """Where the mirror runs: this device's address, its peer's, the interface between them, and the addresses
    whose connections are not mirrored."""

    me: str
    peer: str
    interface: str
    ignored: tuple[str, ...]


@dataclass(frozen=True)
class MirroringReport:
    """The mirror as `conntrackd -s` tells it: connections this device tracks and sends (internal), those the
    peer sent (external), and messages lost on the link."""

    peer: str
    running: bool
    internal: int
    external: int
    lost: int
    error: str | None = None

    @classmethod
    def not_mirroring(cls, why: str) -> "MirroringReport":
        """A traffic group that asks for mirroring, and why it does not happen."""
        return cls("", False, 0, 0, 0, why)


def interface_to(peer: str) -> str:
    """The interface the route to `peer` goes out of (ValueError: none, or `peer` is not an address)."""
    try:
        ip_address(peer)
        done = subprocess.run(["ip", "-o", "route", "get", peer], capture_output=True, text=True,
                              timeout=CLIENT_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ValueError(f"cannot look the route to the peer {peer} up: {error}") from None
    found = re.search(r"\bdev (\S+)", done.stdout)
    if done.returncode != 0 or found is None:
        raise ValueError(f"no route to the peer {peer}: {done.stderr.strip() or done.stdout.strip()}")
    return found.group(1)


def render(link: MirrorLink, directory: Path) -> str:
    """conntrackd's configuration for `link` (addresses checked: nothing else reaches the file)."""
    family = "IPv4" if ip_address(link.me).version == 4 else "IPv6"
    if not re.fullmatch(r"[A-Za-z0-9_.:@-]{1,15}", link.interface):
        raise ValueError(f"interface {link.interface!r}: not an interface name")
    ignored = "\n".join(f"      {'IPv4' if ip_address(a).version == 4 else 'IPv6'}_address {ip_address(a)}"
                        for a in sorted(set(link.ignored) | {"127.0.0.1", "::1", link.me, link.peer}))
    return CONFIG.format(family=family, me=ip_address(link.me), peer=ip_address(link.peer), port=PORT,
                         interface=link.interface, directory=directory, ignored=ignored)


def _daemon_priority() -> None:
    """In conntrackd before it runs: out of the failover process's real-time scheduling, at the data plane's
    priority where allowed; it dies with the failover process."""
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, ipc.PRIORITY_NICE)
    ipc.exit_with_parent()


class ConnectionMirror:
    """One supervised `conntrackd` for this device (none while no link is configured)."""

    def __init__(self, directory: Path, binary: str = "conntrackd") -> None:
        self.directory = directory.absolute()  # conntrackd takes absolute paths only
        self.binary = binary
        self.config = directory / "conntrackd.conf"
        self.link: MirrorLink | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self.error: str | None = None

    async def configure(self, link: MirrorLink | None) -> None:
        """Mirror over `link` (None: stop mirroring); conntrackd starts again when the addresses or the interface
        change (a restart forgets what the peer sent; a changed list of addresses not mirrored waits for the
        next start)."""
        if link == self.link and (link is None or self._supervisor is not None):
            return
        if (link is not None and self.link is not None and self._supervisor is not None
                and (link.me, link.peer, link.interface) == (self.link.me, self.link.peer, self.link.interface)):
            with contextlib.suppress(OSError, ValueError):
                self.config.write_text(render(link, self.directory))
                self.link = link
            return
        await self.stop()
        self.link = link
        if link is None:
            return
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.config.write_text(render(link, self.directory))
        except (OSError, ValueError) as error:
            self.error = f"cannot configure conntrackd: {error}"
            log.warning("%s", self.error)
            return
        self.error = None
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())

    async def _supervise(self) -> None:
        while True:
            (self.directory / "conntrackd.lock").unlink(missing_ok=True)  # one killed with us leaves it
            try:
                with open(self.directory / "conntrackd.out", "ab") as output:
                    self._process = await asyncio.create_subprocess_exec(
                        self.binary, "-C", str(self.config), stdin=asyncio.subprocess.DEVNULL, stdout=output,
                        stderr=output, preexec_fn=_daemon_priority)
            except OSError as error:
                self.error = f"cannot start conntrackd: {error}"
                log.warning("%s", self.error)
                await asyncio.sleep(RESTART_PAUSE)
                continue
            code = await self._process.wait()
            self.error = f"conntrackd exited with {code} (see {self.directory / 'conntrackd.log'}): started again"
            log.warning("%s", self.error)
            await asyncio.sleep(RESTART_PAUSE)

    async def _client(self, *arguments: str) -> str:
        """One `conntrackd -C CONFIG ARGUMENTS` call to the running daemon; its output (RuntimeError: failed)."""
        try:
            process = await asyncio.create_subprocess_exec(
                self.binary, "-C", str(self.config), *arguments, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, preexec_fn=_daemon_priority)
        except OSError as error:
            raise RuntimeError(f"cannot run {self.binary}: {error}") from None
        try:
            async with asyncio.timeout(CLIENT_TIMEOUT):
                output, _ = await process.communicate()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            raise RuntimeError(f"conntrackd {' '.join(arguments)} did not answer") from None
        if process.returncode != 0:
            raise RuntimeError(f"conntrackd {' '.join(arguments)}: {output.decode(errors='replace').strip()[-200:]}")
        return output.decode(errors="replace")

    async def commit(self) -> None:
        """This device takes over: the connections the peer sent go into the kernel (`-c`, awaited: before the
        addresses arrive); then, in the background, the caches start afresh from the kernel and this device's
        connections are sent to the peer (`-f`, `-R`, `-B`, as conntrackd's primary-backup script)."""
        if self._supervisor is None:
            return
        await self._steps("-c")
        self._background(self._steps("-f", "-R", "-B"))

    def standby(self) -> None:
        """This device steps down: the connections it translated age out soon (`-t`), and it asks the new active
        device for its connections (`-n`), in the background."""
        if self._supervisor is not None:
            self._background(self._steps("-t", "-n"))

    async def _steps(self, *steps: str) -> None:
        for step in steps:
            try:
                await self._client(step)
            except RuntimeError as error:
                self.error = str(error)
                log.warning("mirroring: %s", error)

    def _background(self, steps: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(steps)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def report(self) -> MirroringReport | None:
        """What `conntrackd -s` says (None: not mirroring)."""
        if self.link is None:
            return None
        running = self._process is not None and self._process.returncode is None
        try:
            stats = await self._client("-s") if running else ""
        except RuntimeError as error:
            return MirroringReport(self.link.peer, running, 0, 0, 0, str(error))
        if running:
            self.error = None  # it answers
        return MirroringReport(self.link.peer, running, _count(stats, "cache internal"),
                               _count(stats, "cache external"), _lost(stats), self.error)

    async def stop(self) -> None:
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await process.wait()
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()


def _count(stats: str, section: str) -> int:
    """`current active connections` of a section of `conntrackd -s`."""
    found = re.search(re.escape(section) + r":\s*current active connections:\s*(\d+)", stats)
    return int(found.group(1)) if found else 0


def _lost(stats: str) -> int:
    found = re.search(r"(\d+) Lost msgs", stats)
    return int(found.group(1)) if found else 0
