"""The data plane of one device: it serves what failover says this device must serve now.

That is every enabled virtual server whose traffic group this device is active for (or whose
traffic group does not exist), on its destination, plus those traffic groups' floating addresses.
It follows failover at once and configuration changes within `SETTLE` seconds (changes coming in
bursts are served together).
"""

import asyncio
import contextlib
import logging
from typing import Any

from tandem.config.integrity import Violation, violations
from tandem.config.presentation import present
from tandem.dataplane.addresses import AddressProvider
from tandem.dataplane.engine import BuiltinEngine, served_from_objects
from tandem.failover.service import FailoverService
from tandem.models import Monitor, Pool, VirtualServer
from tandem.models.fields import resolve_reference
from tandem.store import Store
from tandem.tasks import cancel
from tandem.trust.domain import Domain

log = logging.getLogger("tandem.dataplane")

SETTLE = 0.1
RESYNC = 2.0
"""Seconds between reconciliations when nothing signals a change."""
RETRY = 0.05
"""Seconds before trying again an address or listener that failed (e.g. still held by a draining device)."""
STOP_DRAIN = 2.0


class DataPlane:
    """Keeps the proxy engine and the floating addresses in step with failover and configuration."""

    def __init__(self, store: Store, domain: Domain, failover: FailoverService, addresses: AddressProvider,
                 engine: BuiltinEngine | None = None) -> None:
        self._store = store
        self._domain = domain
        self._failover = failover
        self._addresses = addresses
        self.engine = engine or BuiltinEngine()
        self.added: set[str] = set()
        self.address_errors: dict[str, str] = {}
        self._wake = asyncio.Event()
        self._urgent = False
        self._task: asyncio.Task | None = None
        self._announcing: set[asyncio.Task] = set()
        self._violations: set[Violation] = set()

    def changed(self, urgent: bool = False) -> None:
        """Something this device serves may have changed; `urgent` (failover) skips the settling delay."""
        self._urgent |= urgent
        self._wake.set()

    async def start(self) -> None:
        """Start following; first take off any floating address a crashed run of this device left behind."""
        _, held = self.desired(everything=True)
        for address in sorted(held):
            await self._remove(address)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        await cancel(self._task)
        await self.engine.stop_all(STOP_DRAIN)
        for address in list(self.added):
            await self._remove(address)

    async def _run(self) -> None:
        wait = RESYNC
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)
            if not self._urgent and self._wake.is_set():
                await asyncio.sleep(SETTLE)
            self._wake.clear()
            self._urgent = False
            try:
                await self.reconcile()
            except Exception:  # the data plane must outlive any one failure; the next round retries
                log.exception("data plane reconciliation failed")
            wait = RETRY if self.engine.errors or self.address_errors else RESYNC

    def _serves(self, traffic_group: str, everything: bool) -> bool:
        if everything:
            return self._domain.traffic_group(traffic_group) is not None
        return self._failover.serves(traffic_group)

    def desired(self, everything: bool = False) -> tuple[list[Any], set[str]]:
        """The virtual servers to serve and the addresses to hold, now (only what they use is read);
        with `everything`, those of every traffic group instead (the addresses that float). Where the
        configuration breaks a rule (merged replicas can), the resolution `violations` gives is served."""
        unserved = {(v.partition, v.name) for v in self._check_integrity() if v.kind == VirtualServer.kind}
        virtuals = [r.body for r in self._store.records(VirtualServer.kind)
                    if self._serves(r.body.get("traffic_group", ""), everything)
                    and (r.partition, r.name) not in unserved]
        pools, monitors = [], []
        for virtual in virtuals:
            if not virtual.get("pool"):
                continue
            partition, name = resolve_reference(virtual["partition"], virtual["pool"])
            pool = self._store.get(Pool.kind, partition, name)
            if pool is None:
                continue
            pools.append(present(self._store, Pool.kind, pool))
            if pool.get("monitor"):
                monitor = self._store.get(Monitor.kind, *resolve_reference(partition, pool["monitor"]))
                monitors += [monitor] if monitor else []
        served = served_from_objects(virtuals, pools, monitors)
        addresses = {v.address for v in served}
        for traffic_group in self._domain.traffic_groups():
            if self._serves(traffic_group["name"], everything):
                addresses.update(traffic_group["addresses"])
        return served, addresses

    def _check_integrity(self) -> set[Violation]:
        """The rules the configuration breaks, each logged once when it appears."""
        found = set(violations(self._store))
        for violation in sorted(found - self._violations, key=lambda v: v.message):
            log.warning("the merged configuration breaks a rule: %s", violation.present()["message"])
        self._violations = found
        return found

    async def reconcile(self) -> None:
        served, addresses = self.desired()
        for address in sorted(addresses - self.added):
            try:
                await asyncio.to_thread(self._addresses.add, address)
            except Exception as error:  # netlink, permissions, a bad address: report it, keep serving the rest
                self.address_errors[address] = str(error)
                log.warning("cannot add address %s: %s", address, error)
            else:
                self.address_errors.pop(address, None)
                self.added.add(address)
        await self.engine.apply([v for v in served if v.address in self.added])
        for address in sorted(self.added - addresses):
            await self._remove(address)

    async def _remove(self, address: str) -> None:
        try:
            await asyncio.to_thread(self._addresses.remove, address)
        except Exception as error:  # reported; the next reconciliation tries again
            log.warning("cannot remove address %s: %s", address, error)
        self.added.discard(address)

    def announce_soon(self) -> None:
        """Announce again every address held (gratuitous ARP), in the background."""
        task = asyncio.get_running_loop().create_task(self.announce())
        self._announcing.add(task)
        task.add_done_callback(self._announcing.discard)

    async def announce(self) -> None:
        """Announce again every address held (gratuitous ARP): when a member comes back (a partition
        heals), the device that stays active must win back the neighbours the other one took."""
        for address in sorted(self.added):
            try:
                await asyncio.to_thread(self._addresses.announce, address)
            except Exception as error:  # best effort: the address is held either way
                log.warning("cannot announce address %s: %s", address, error)

    def status(self) -> dict[str, Any]:
        stats = self.engine.stats()
        return {"addresses": sorted(self.added), "address_errors": self.address_errors,
                "errors": dict(self.engine.errors)} | stats
