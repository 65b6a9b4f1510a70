"""The data plane process of a device: serves the virtual servers of the traffic groups it is active for.

It runs apart from the management process (`python -m tandem.dataplane.daemon`, started by
`DataPlane`) so that no API load, SQLite write or sync work ever holds traffic. The management
process tells it what the configuration says (`changes` of the virtual servers with their pools,
monitors and certificates, kept in a `Catalog`; should taking them fail it asks for everything again,
`resend`); the failover process, which connects to its Unix socket, tells it which traffic groups are
active here and asks it every heartbeat interval whether it answers (a data plane that stops
answering makes the device step down). It serves with the engine the management process chose
(`--engine builtin|haproxy|nftables`, `dataplane.choice`: HAProxy in shards, `haproxy_shards`; the kernel,
`nftables_engine`).
"""

import argparse
import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol, get_args

from tandem import ipc
from tandem.dataplane.catalog import Catalog
from tandem.dataplane.engine import BuiltinEngine, ServedPool, ServedVirtual
from tandem.dataplane.engine_events import EngineStatus
from tandem.dataplane.tracked import TrackedPools
from tandem.models.api import EngineName
from tandem.tasks import cancel

log = logging.getLogger("tandem.dataplane")

STOP_DRAIN = 2.0
SHARE = 0.5
"""The share of a core that applying changes may use over time."""
BURST = 1.0
"""CPU seconds applying may use at once, above `SHARE`."""


class Engine(Protocol):
    """What the data plane process asks of its engine (`BuiltinEngine`, `HaproxyShards`, `NftablesEngine`)."""

    name: str
    version: str
    errors: dict[str, str]
    """Virtual servers (by `/partition/name`) not served, with why."""
    stats_off_loop: bool
    """`stats` may run on another thread (it only reads what the event loop replaces whole, never changes in
    place): the data plane process builds them there."""
    readies_standby: bool
    """It may listen on floating addresses this device does not hold (HAProxy binds `transparent`): on a standby
    host of its own it serves its traffic groups' virtual servers ahead, and a takeover only moves the address
    (bench/failover.py, fast_ratio_vs_keepalived: loading them at takeover took 66 ms of 0.28 s)."""

    async def apply(self, desired: Iterable[ServedVirtual]) -> None: ...

    async def refresh_stats(self) -> None:
        """Bring the counters `stats` gives up to date (an engine that keeps them current does nothing)."""

    def cpu_seconds(self) -> float:
        """The CPU time the engine's own processes (not the data plane process or its reaped children) used."""

    def retry_after(self) -> float | None:
        """Seconds before `apply` should run again though nothing changed (a virtual server could not listen
        yet); None: nothing to try again (what is not served cannot be, until the configuration changes)."""

    async def stop_all(self, drain_timeout: float) -> None: ...

    def stats(self) -> dict[str, Any]: ...

    def status(self) -> EngineStatus:
        """Which engine, its restarts and events."""


class DataPlaneProcess:
    """What to serve, from the two other processes, and the engine serving it."""

    def __init__(self, engine: Engine, socket_path: Path) -> None:
        self.engine = engine
        self._socket_path = socket_path
        self._catalog = Catalog()
        """Touched only by `_served` (on a thread of its own, one call at a time)."""
        self._changes: list[ipc.Message] = []
        """`changes` messages not yet in the catalog."""
        self._active: set[str] = set()
        self._ready: set[str] = set()
        """The traffic groups this device is standby for, on a host of its own: served ahead where the engine can."""
        self._standalone = False
        self._tracked_paths: tuple[str, ...] = ()
        """The pools the failover process's pool trackers name (`/partition/name`)."""
        self._tracked = TrackedPools()
        self._wake = asyncio.Event()
        self._urgent = asyncio.Event()
        """The traffic groups to serve changed: no pause before serving them."""
        self._credit, self._credit_at = BURST, time.monotonic()
        """CPU seconds applying may still spend at once (`_owed`), as of when."""

    def _served(self, changes: list[ipc.Message], active: set[str], ready: set[str], standalone: bool,
                tracked: tuple[str, ...]) -> tuple[list[ServedVirtual], dict[str, ServedPool | None]]:
        """The virtual servers of the `active` traffic groups (those of no known traffic group when `standalone`),
        with those of the `ready` ones where the engine serves them ahead (not those whose connections to members
        leave from the floating address, `snat` automap: that address is not here), and the `tracked` pools by
        path, `changes` taken first."""
        for message in changes:
            self._catalog.update(message)
        known = self._catalog.traffic_groups
        ahead = ready if self.engine.readies_standby else set()
        return ([v for v in self._catalog.served()
                 if (v.traffic_group in active or (v.traffic_group in ahead and v.snat != "automap")
                     if v.traffic_group in known else standalone)],
                {path: self._catalog.pool(tuple(path.split("/")[1:3])) for path in tracked})

    async def run(self, control: ipc.Channel) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._socket_path.unlink()
        server = await asyncio.start_unix_server(self._failover_connected, self._socket_path)
        os.chmod(self._socket_path, 0o600)
        serving = asyncio.get_running_loop().create_task(self._serve(control))
        try:
            await control.serve(self._from_management)  # until the management process is gone
        finally:
            server.close()
            await cancel(serving)
            await self._tracked.stop()
            await self.engine.stop_all(STOP_DRAIN)

    async def _serve(self, control: ipc.Channel) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._urgent.clear()
            changes, self._changes = self._changes, []
            used = self._cpu_seconds()
            try:  # off the event loop, as rendering: the failover process's pings go on meanwhile
                served, tracked = await asyncio.to_thread(self._served, changes, set(self._active), set(self._ready),
                                                          self._standalone, self._tracked_paths)
            except Exception:  # changes may be lost: everything is asked for again
                log.exception("taking the configuration's changes failed")
                self._catalog = Catalog()
                control.send({"type": "resend"})
                continue
            try:
                await self._tracked.update(tracked)
            except Exception:  # the pool trackers say "down" rather than the data plane stop serving
                log.exception("following the tracked pools failed")
            try:
                await self.engine.apply(served)
            except Exception:  # the data plane must outlive any one failure; the next change retries
                log.exception("applying the configuration failed")
            retry = self.engine.retry_after()
            wait = max(self._owed(self._cpu_seconds() - used), retry or 0.0)
            if wait:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._urgent.wait(), wait)
            if retry is not None:
                self._wake.set()

    def _cpu_seconds(self) -> float:
        """The CPU time of this process, its reaped children (`haproxy -c`) and the engine's processes."""
        own = os.times()
        return own.user + own.system + own.children_user + own.children_system + self.engine.cpu_seconds()

    def _owed(self, spent: float) -> float:
        """How long the changes that come next wait (unless the traffic groups served here change), now that
        applying spent `spent` CPU seconds: applying may use `BURST` seconds at once, and `SHARE` of a core
        over time, however large the configuration. Back-to-back reloads of 11,000 virtual servers took a
        core from the rest of the device while they arrived (bench/agent.py, initial_10k_s); a pause after
        every apply added a quarter of a second to each Ingress change."""
        now = time.monotonic()
        self._credit = min(BURST, self._credit + (now - self._credit_at) * SHARE) - spent
        self._credit_at = now
        return max(0.0, -self._credit / SHARE)

    async def _from_management(self, message: ipc.Message) -> ipc.Message | None:
        kind = message["type"]
        if kind == "changes":
            self._changes.append(message)
            self._wake.set()
            return None
        if kind == "status":
            await self.engine.refresh_stats()
            # off the event loop where the engine allows: the stats of 11,000 virtual servers took over a second,
            # the failover process's pings waited and the device took itself out of service (bench/agent.py)
            stats = await asyncio.to_thread(self.engine.stats) if self.engine.stats_off_loop else self.engine.stats()
            return {"errors": dict(self.engine.errors), "engine": asdict(self.engine.status()), **stats}
        raise ValueError(f"unknown message {kind!r}")

    async def _failover_connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await ipc.Channel(reader, writer).serve(self._from_failover)

    def _from_failover(self, message: ipc.Message) -> ipc.Message | None:
        kind = message["type"]
        if kind == "ping":
            return {"pools": self._tracked.availability()}
        if kind == "serve":
            active, ready, standalone = set(message["active"]), set(message["ready"]), bool(message["standalone"])
            if (active, ready, standalone) != (self._active, self._ready, self._standalone):
                self._active, self._ready, self._standalone = active, ready, standalone
                self._wake.set()
                self._urgent.set()
            tracked = tuple(message["pools"])
            if tracked != self._tracked_paths:
                self._tracked_paths = tracked
                self._wake.set()
            return None
        raise ValueError(f"unknown message {kind!r}")


def make_engine(args: argparse.Namespace) -> Engine:
    """The engine the management process chose (`--engine`)."""
    if args.engine == "haproxy":
        from tandem.dataplane.haproxy_shards import HaproxyShards  # lazily: only a HAProxy device loads it

        return HaproxyShards(args.runtime_dir, args.binary)
    if args.engine == "nftables":
        from tandem.dataplane.nftables_engine import NftablesEngine

        return NftablesEngine(args.binary)
    return BuiltinEngine()


async def _run(args: argparse.Namespace, control: ipc.Channel) -> None:
    await DataPlaneProcess(make_engine(args), Path(args.socket)).run(control)


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--socket", required=True, help="the Unix socket the failover process connects to")
    parser.add_argument("--engine", choices=get_args(EngineName), default="builtin",
                        help="the engine serving traffic (chosen by the management process)")
    parser.add_argument("--runtime-dir", type=Path, required=True,
                        help="HAProxy's runtime directory (absolute): its configuration and sockets")
    parser.add_argument("--binary", default="haproxy", help="the engine's binary (haproxy, nft)")


if __name__ == "__main__":
    ipc.child_main("dataplane", "The data plane process of a Tandem device (started by it).", _arguments, _run)
