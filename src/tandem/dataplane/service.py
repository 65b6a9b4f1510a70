"""The data plane as the management process sees it: the data plane process started and kept running,
told what the configuration says it may serve (`feed`), asked for its counters.

The data plane process serves those of the traffic groups the failover process says are active here; the
addresses of each traffic group's virtual servers float with it (the failover process holds them). A
configuration change is sent at once, the changes that follow within `SETTLE` seconds together after it.
"""

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tandem import ipc
from tandem.config.integrity import Violation
from tandem.dataplane.choice import BUILTIN, EngineChoice
from tandem.dataplane.engine_events import EngineEvent, EngineStatus
from tandem.dataplane.feed import Desired, Feed
from tandem.errors import ApiError, NotFound
from tandem.failover.service import DATAPLANE_SOCKET, FailoverService
from tandem.models import VirtualServer
from tandem.store import Store
from tandem.tasks import cancel
from tandem.trust.domain import Domain

log = logging.getLogger("tandem.dataplane")

SETTLE = 0.02
ANSWER_TIMEOUT = 5.0
"""Seconds to wait for the data plane process to answer a request."""
HAPROXY_RUNTIME_DIR = "run/haproxy"
"""HAProxy's runtime directory (its configuration, sockets), in the data directory."""


class DataPlaneUnavailable(ApiError):
    status, code = 503, "unavailable"


@dataclass(frozen=True)
class ServingStatus:
    """What this device serves (`GET /api/dataplane`): the floating addresses it holds (and those it
    could not), and the data plane process's errors, virtual servers and pools with their counters and
    member health, by `/partition/name`, as that process reports them."""

    addresses: list[str]
    address_errors: dict[str, str]
    errors: dict[str, str]
    virtuals: dict[str, ipc.Message]
    pools: dict[str, ipc.Message]
    process: ipc.ProcessStatus
    engine: EngineStatus


def _address_error(address: str, address_errors: dict[str, str]) -> str:
    return f"its address {address} cannot be added to this device: {address_errors[address]}"


def _child_arguments(engine: EngineChoice, data_dir: Path) -> list[str]:
    """The data plane process's arguments: its socket (relative to the data directory, its working
    directory), its engine, HAProxy's runtime directory (absolute: HAProxy takes a relative socket path
    for a host name) and, for HAProxy, the binary chosen."""
    runtime_dir = (data_dir / HAPROXY_RUNTIME_DIR).absolute()
    arguments = ["--socket", DATAPLANE_SOCKET, "--engine", engine.name, "--runtime-dir", str(runtime_dir)]
    return arguments + (["--binary", engine.binary] if engine.binary else [])


class DataPlane:
    """Starts the data plane process and keeps it told what the configuration says."""

    def __init__(self, store: Store, domain: Domain, failover: FailoverService, data_dir: Path,
                 engine: EngineChoice = BUILTIN) -> None:
        self._store = store
        self._domain = domain
        self._failover = failover
        self.engine = engine
        """The engine the data plane process runs (chosen once, when the device opens)."""
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._child = ipc.Child("dataplane", "tandem.dataplane.daemon", _child_arguments(engine, data_dir),
                                data_dir, self._sockets, self._started)
        self._listening: asyncio.Task | None = None
        self._feed = Feed(store)
        self._changed_keys: set[tuple[str, str, str]] = set()
        """What commits changed since the feed last read the store."""
        self._violations: frozenset[Violation] = frozenset()

    @staticmethod
    def _sockets() -> tuple[Any, list[Any]]:
        mine, theirs = ipc.channel_pair()
        return mine, [theirs]

    def changed(self) -> None:
        """The configuration or the trust domain may have changed: tell the data plane process (at once, or
        with the others coming within `SETTLE` seconds of the last message)."""
        self._wake.set()

    def keys_changed(self, keys: list[tuple[str, str, str]]) -> None:
        """A commit changed these objects (the store's `on_keys`)."""
        self._changed_keys.update(keys)
        self._wake.set()

    async def start(self) -> None:
        self._child.start()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        await cancel(self._task)
        await self._child.stop()
        await cancel(self._listening)

    async def _started(self, channel: ipc.Channel) -> None:
        await cancel(self._listening)
        self._listening = asyncio.get_running_loop().create_task(channel.serve(self._from_dataplane))
        self._feed.sent = None  # a new process: it is sent everything
        self._wake.set()

    def _from_dataplane(self, message: ipc.Message) -> None:
        if message["type"] != "resend":
            raise ValueError(f"unknown message {message['type']!r}")
        self._feed.sent = None  # it lost track: everything, in the next message
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            started = time.perf_counter()
            changed, self._changed_keys = self._changed_keys, set()
            traffic_groups = {t.name: t.addresses for t in self._domain.traffic_groups()}
            try:
                desired = await asyncio.to_thread(self._feed.build, changed, traffic_groups)
                self._use(desired)
            except Exception:  # the data plane must outlive any one failure; the next change sends again
                log.exception("computing what the data plane serves failed")
                self._feed.reset()
            # what changes meanwhile goes in the next message, together; a large configuration waits as long as
            # a round took, so that rounds never take more than half of this process's time (a third, waiting
            # twice as long, added 0.3 s to an Ingress change with 11,000 virtual servers, bench/agent.py)
            await asyncio.sleep(max(SETTLE, time.perf_counter() - started))

    def _use(self, desired: Desired) -> None:
        """Log the rules newly broken, give the failover process the addresses to hold, send the changes."""
        for violation in sorted(desired.violations - self._violations, key=lambda v: v.message):
            log.warning("the merged configuration breaks a rule: %s", violation.view().message)
        self._violations = desired.violations
        self._failover.set_virtual_addresses(*desired.addresses)
        channel = self._child.channel
        if channel is not None and not channel.closed:
            message = self._feed.changes(desired)
            if message is not None:
                channel.send(message)

    async def status(self) -> ServingStatus:
        """What this device serves now."""
        channel = self._child.channel
        if channel is None or channel.closed:
            raise DataPlaneUnavailable("the data plane process is not running (it is being started again)")
        try:
            served = await channel.request({"type": "status"}, ANSWER_TIMEOUT)
        except (TimeoutError, ipc.ChannelClosed) as error:
            raise DataPlaneUnavailable(f"the data plane process did not answer: {error}") from None
        address_errors = self._failover.address_errors
        virtuals = {}
        for key, stats in served["virtuals"].items():
            if not stats.get("error") and stats.get("address") in address_errors:
                stats = {**stats, "error": _address_error(stats["address"], address_errors)}
            virtuals[key] = stats
        engine = served["engine"]
        return ServingStatus(self._failover.addresses, address_errors, served["errors"], virtuals, served["pools"],
                             self._child.status(),
                             EngineStatus(**engine | {"events": [EngineEvent(**e) for e in engine["events"]]}))

    async def virtual_stats(self, partition: str, name: str) -> ipc.Message:
        """Its counters; its `error` says why it cannot be reached (it cannot listen, or its address cannot be
        added here). NotFound if it is not served here (with why, when its address is the cause)."""
        status = await self.status()
        stats = status.virtuals.get(f"/{partition}/{name}")
        if stats is None:
            virtual = self._store.get(VirtualServer.kind, partition, name)
            address = virtual.get("address") if virtual else None
            why = f": {_address_error(address, status.address_errors)}" if address in status.address_errors else ""
            raise NotFound(f"virtual server /{partition}/{name} is not served by this device{why}", target=name)
        return stats

    async def pool_stats(self, partition: str, name: str) -> ipc.Message:
        stats = (await self.status()).pools.get(f"/{partition}/{name}")
        if stats is None:
            raise NotFound(f"pool /{partition}/{name} is not served by this device", target=name)
        return stats
