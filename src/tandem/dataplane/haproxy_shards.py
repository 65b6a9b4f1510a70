"""The HAProxy engine of a device: its virtual servers spread over `SHARDS` HAProxy processes.

A configuration change reloads only the HAProxy serving the virtual servers it touches, so a reload (whose
cost grows with the configuration it loads) costs a share of the whole: one HAProxy serving 11,000 virtual
servers parsed its configuration for 1.4 s at each change (bench/agent.py, ingress_change_p99_ms). A
virtual server's shard is a hash of its key: it never moves from one HAProxy to another (a move would not
be hitless). A shard starts its HAProxy when it first has something to serve, and keeps it (serving
nothing, when nothing is left: its last reload lets open connections finish); each keeps its own runtime
directory, `DIR/N`.
"""

import asyncio
import functools
import os
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tandem.dataplane.engine import ServedVirtual
from tandem.dataplane.engine_events import EVENTS_KEPT, EngineStatus
from tandem.dataplane.haproxy_engine import COUNTERS, HaproxyEngine, installed_version
from tandem.dataplane.haproxy_process import HaproxyProcess

SHARDS = 32
"""A reload of a shard of 700 virtual servers (of 11,000, at 16 shards) took 0.125 s of a master's CPU, 0.03 s of
it whatever the size: at 16 shards, 20 Ingress changes in a row outran the data plane's CPU share and the last
waited (bench/agent.py, ingress_change_p99_ms)."""
LOADS_AT_ONCE = max(1, (os.cpu_count() or 1) - 1)
"""Shards that check and load a configuration at the same time: all CPUs but one, which is left to the API
and the rest. After 10,000 services arrived, the 16 shards reloading together held a device's API up to 0.8 s
(bench/agent.py, change_p99_ms)."""


@functools.lru_cache(maxsize=1 << 17)
def shard_of(key: str, shards: int = SHARDS) -> int:
    """The shard serving the virtual server `key` (`/partition/name`), for good."""
    return zlib.crc32(key.encode()) % shards


class HaproxyShards:
    """Serves virtual servers with one `HaproxyEngine` per shard; same calls as `BuiltinEngine`."""

    name = "haproxy"
    stats_off_loop = True
    readies_standby = True

    def __init__(self, runtime_dir: Path, binary: str = "haproxy", shards: int = SHARDS) -> None:
        runtime_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(runtime_dir, 0o700)
        for left in [runtime_dir, *(p for p in runtime_dir.iterdir() if p.is_dir())]:  # what a previous one left,
            HaproxyProcess(left, binary).stop_orphan()  # in a shard this one may never start (or without shards)
        self.version = installed_version(binary)  # asked once, not once a shard
        loading = asyncio.Semaphore(LOADS_AT_ONCE)
        self.shards = [HaproxyEngine(runtime_dir / str(number), binary, self.version, loading)
                       for number in range(shards)]
        self._started: set[int] = set()
        """The shards whose HAProxy runs."""
        self._applied: dict[int, list[ServedVirtual]] = {}
        """What each shard last applied (a shard given the very same objects again is not asked)."""

    @property
    def errors(self) -> dict[str, str]:
        """Virtual servers (key `/partition/name`) not served as asked, with the reason."""
        return {key: error for shard in self.shards for key, error in shard.errors.items()}

    async def apply(self, desired: Iterable[ServedVirtual]) -> None:
        """Serve exactly the enabled virtual servers of `desired` (idempotent); the shards change together."""
        wanted: dict[int, list[ServedVirtual]] = {}
        for virtual in desired:
            if virtual.enabled:
                wanted.setdefault(shard_of(virtual.key, len(self.shards)), []).append(virtual)
        self._started |= wanted.keys()
        await asyncio.gather(*(self._apply(number, wanted.get(number, [])) for number in self._started
                               if not self._unchanged(number, wanted.get(number, []))))

    def _unchanged(self, number: int, virtuals: list[ServedVirtual]) -> bool:
        """The shard applied these very objects last, and waits for nothing to be tried again: asking it
        again would only render its configuration to find it the same (16 of them took 0.3 s a change at
        11,000 virtual servers, bench/agent.py, ingress_change_p99_ms)."""
        last = self._applied.get(number)
        return (last is not None and len(last) == len(virtuals) and self.shards[number].retry_after() is None
                and all(a is b for a, b in zip(last, virtuals, strict=True)))

    async def _apply(self, number: int, virtuals: list[ServedVirtual]) -> None:
        self._applied.pop(number, None)
        await self.shards[number].apply(virtuals)
        self._applied[number] = virtuals

    async def refresh_stats(self) -> None:
        await asyncio.gather(*(self.shards[number].refresh_stats() for number in self._started))

    def retry_after(self) -> float | None:
        waits = [wait for shard in self.shards if (wait := shard.retry_after()) is not None]
        return min(waits) if waits else None

    def cpu_seconds(self) -> float:
        return sum(shard.cpu_seconds() for shard in self.shards)

    async def stop_all(self, drain_timeout: float) -> None:
        await asyncio.gather(*(shard.stop_all(drain_timeout) for shard in self.shards))
        self._started, self._applied = set(), {}

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"virtuals": {}, "pools": {}}
        for shard in self.shards:
            stats = shard.stats()
            out["virtuals"].update(stats["virtuals"])
            for key, members in stats["pools"].items():  # a pool of several shards: their counters summed
                merged = out["pools"].setdefault(key, {})
                for member, counters in members.items():
                    merged[member] = _summed(merged[member], counters) if member in merged else counters
        return out

    def status(self) -> EngineStatus:
        """HAProxy, how many times any of them died and was started again, and their events (oldest first)."""
        statuses = [shard.status() for shard in self.shards]
        events = sorted((event for status in statuses for event in status.events), key=lambda event: event.at)
        return EngineStatus(self.name, self.version, sum(s.restarts for s in statuses), events[-EVENTS_KEPT:])

    @property
    def virtuals(self) -> dict[str, ServedVirtual]:
        """What is being served, by virtual key."""
        return {key: virtual for shard in self.shards for key, virtual in shard.virtuals.items()}


HEALTH_ORDER = ("down", "unchecked", "up")


def _summed(one: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """A member's stats from two shards (each checks its pools' members itself): counters added, the worse
    health, the rest (state, weight) the same in both."""
    health = min(one["health"], other["health"], key=HEALTH_ORDER.index)
    return one | {name: one[name] + other[name] for name in COUNTERS} | {"health": health}
