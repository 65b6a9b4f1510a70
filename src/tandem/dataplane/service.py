"""The data plane as the management process sees it: the data plane process started and kept running,
told what the configuration says it may serve, asked for its counters.

What to serve is every enabled virtual server (of any traffic group) with its pool and its pool's
monitor, where the configuration breaks a rule (merged replicas can) as `violations` resolves it. The
data plane process serves those of the traffic groups the failover process says are active here; the
addresses of each traffic group's virtual servers float with it (the failover process holds them).
A configuration change is sent at once, the changes that follow within `SETTLE` seconds together after it.
"""

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tandem import ipc
from tandem.config.integrity import Violation, violations
from tandem.config.presentation import model_fields, present
from tandem.dataplane.choice import BUILTIN, EngineChoice
from tandem.dataplane.engine_events import EngineEvent, EngineStatus
from tandem.errors import ApiError, NotFound
from tandem.failover.service import DATAPLANE_SOCKET, FailoverService
from tandem.models import Certificate, Monitor, Pool, VirtualServer
from tandem.models.fields import resolve_reference
from tandem.store import Body, Store
from tandem.tasks import cancel
from tandem.trust.domain import Domain

log = logging.getLogger("tandem.dataplane")

SETTLE = 0.1
ANSWER_TIMEOUT = 5.0
"""Seconds to wait for the data plane process to answer a request."""
HAPROXY_RUNTIME_DIR = "run/haproxy"
"""HAProxy's runtime directory (its configuration, sockets), in the data directory."""


class DataPlaneUnavailable(ApiError):
    status, code = 503, "unavailable"


@dataclass(frozen=True)
class Desired:
    """What the data plane process may serve: the enabled virtual servers with the pools (members
    included), monitors and certificates (with their keys) they use, as stored, and the traffic groups known."""

    virtuals: list[Body]
    pools: list[Body]
    monitors: list[Body]
    traffic_groups: list[str]
    certificates: list[Body] = field(default_factory=list)

    def message(self) -> ipc.Message:
        return {"type": "desired", "virtuals": self.virtuals, "pools": self.pools, "monitors": self.monitors,
                "traffic_groups": self.traffic_groups, "certificates": self.certificates}


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
        self._sent: Desired | None = None
        self._violations: set[Violation] = set()

    @staticmethod
    def _sockets() -> tuple[Any, list[Any]]:
        mine, theirs = ipc.channel_pair()
        return mine, [theirs]

    def changed(self) -> None:
        """The configuration may have changed: tell the data plane process (at once, or with the others
        coming within `SETTLE` seconds of the last message)."""
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
        self._listening = asyncio.get_running_loop().create_task(channel.serve(lambda message: None))
        self._sent = None
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            started = time.perf_counter()
            try:
                self._send(self.desired())
            except Exception:  # the data plane must outlive any one failure; the next change sends again
                log.exception("computing what the data plane serves failed")
            # what changes meanwhile goes in the next message, together; a large configuration waits longer,
            # so that computing it never takes more than a third of this process's time
            await asyncio.sleep(max(SETTLE, 2 * (time.perf_counter() - started)))

    def _send(self, desired: Desired) -> None:
        channel = self._child.channel
        if channel is not None and not channel.closed and desired != self._sent:
            channel.send(desired.message())
            self._sent = desired

    def desired(self) -> Desired:
        """What the data plane process may serve (its `desired` message), and, to the failover process, the
        addresses of the virtual servers of each traffic group (and of none)."""
        found = self._check_integrity()
        unserved = {(v.partition, v.name) for v in found if v.kind == VirtualServer.kind}
        unmonitored = {(v.partition, v.name) for v in found if v.kind == Pool.kind and v.served}
        virtuals = [r.body for r in self._store.records(VirtualServer.kind)
                    if r.body.get("enabled", True) and (r.partition, r.name) not in unserved]
        pools, monitors = {}, {}
        uses = [(virtual["partition"], reference) for virtual in virtuals  # its pool, then its rules'
                for reference in (virtual.get("pool"), *(rule.get("pool") for rule in virtual.get("rules", ())))
                if reference]
        for partition, reference in uses:
            key = resolve_reference(partition, reference)
            pool = self._store.get(Pool.kind, *key)
            if pool is None or key in pools:
                continue
            pools[key] = present(self._store, Pool.kind, pool)
            if pool.get("monitor") and key not in unmonitored:
                monitor_key = resolve_reference(key[0], pool["monitor"])
                monitor = self._store.get(Monitor.kind, *monitor_key)
                if monitor is not None:
                    monitors[monitor_key] = monitor
        certificates = {}  # read whole: the data plane needs the keys the API never shows
        named = [(virtual["partition"], reference) for virtual in virtuals
                 for reference in virtual.get("certificates", ())]
        named += [(pool["partition"], pool["tls"]["ca"]) for pool in pools.values()  # the pools' CA bundles
                  if (pool.get("tls") or {}).get("ca")]
        for partition, reference in named:
            key = resolve_reference(partition, reference)
            certificate = self._store.get(Certificate.kind, *key)
            if certificate is not None and key not in certificates:
                certificates[key] = model_fields(self._store, Certificate.kind, certificate)
        known = {t.name for t in self._domain.traffic_groups()}
        by_traffic_group: dict[str, set[str]] = {}
        standalone: set[str] = set()
        for virtual in virtuals:
            if virtual["traffic_group"] in known:
                by_traffic_group.setdefault(virtual["traffic_group"], set()).add(virtual["address"])
            else:
                standalone.add(virtual["address"])
        self._failover.set_virtual_addresses({tg: tuple(sorted(a)) for tg, a in by_traffic_group.items()},
                                             tuple(sorted(standalone)))
        return Desired(virtuals, list(pools.values()), list(monitors.values()), sorted(known),
                       list(certificates.values()))

    def _check_integrity(self) -> set[Violation]:
        """The rules the configuration breaks, each logged once when it appears."""
        found = set(violations(self._store))
        for violation in sorted(found - self._violations, key=lambda v: v.message):
            log.warning("the merged configuration breaks a rule: %s", violation.view().message)
        self._violations = found
        return found

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
