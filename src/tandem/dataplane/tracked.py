"""The pools the pool trackers name (`failover.trackers`), probed by the data plane process whatever it serves:
a standby device must know how its own view of a pool compares with the active device's, so each device probes
the tracked pools itself, with the pool's monitor and the builtin probes (`monitor.py`), whichever engine serves
the traffic."""

from dataclasses import dataclass

from tandem.dataplane.engine import ServedPool
from tandem.dataplane.monitor import UNCHECKED, UP, PoolMonitor


@dataclass
class _Tracked:
    pool: ServedPool
    monitor: PoolMonitor


class TrackedPools:
    """A monitor per tracked pool, kept in step with the configuration (`update`)."""

    def __init__(self) -> None:
        self._pools: dict[str, _Tracked] = {}

    async def update(self, pools: dict[str, ServedPool | None]) -> None:
        """Probe exactly these pools (by path; None: the configuration has no such pool)."""
        for path in [p for p in self._pools if pools.get(p) is None]:
            await self._pools.pop(path).monitor.stop()
        for path, pool in pools.items():
            if pool is None:
                continue
            members = [(m.address, m.port) for m in pool.members if m.state == "enabled"]
            tracked = self._pools.get(path)
            if tracked is None:
                monitor = PoolMonitor(path, pool.monitor, members)
                monitor.start()
                self._pools[path] = _Tracked(pool, monitor)
            elif tracked.pool != pool:
                await tracked.monitor.update(pool.monitor, members)
                tracked.pool = pool

    def availability(self) -> dict[str, tuple[int, int, int]]:
        """Each tracked pool's enabled members up, those judged (up or down: not those not probed yet), and all
        of them, by path."""
        out = {}
        for path, tracked in self._pools.items():
            states = list(tracked.monitor.states().values())
            out[path] = (sum(state == UP for state in states), sum(state != UNCHECKED for state in states),
                         len(states))
        return out

    async def stop(self) -> None:
        await self.update({})
