"""Traffic counters of the builtin engine: per virtual server and per pool member.

`bytes_in` is what went from clients to backends, `bytes_out` what went from backends to
clients, counted as the proxy hands it to the other side. A member's counters belong to its
pool, so virtual servers that share a pool add to the same member counters.
"""

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Counters:
    """Connections (total, current) and bytes both ways, of one virtual server or one member."""

    connections_total: int = 0
    connections_current: int = 0
    bytes_in: int = 0
    bytes_out: int = 0

    def snapshot(self) -> dict[str, int]:
        return {
            "connections_total": self.connections_total,
            "connections_current": self.connections_current,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
        }


@dataclass
class PoolStats:
    """The counters of a pool's members, by member key (`address:port`)."""

    members: dict[str, Counters] = field(default_factory=dict)

    def member(self, key: str) -> Counters:
        """The counters of one member, created at zero on first use."""
        counters = self.members.get(key)
        if counters is None:
            counters = self.members[key] = Counters()
        return counters

    def current(self, key: str) -> int:
        """The member's open connections (those being connected included): what least-connections reads."""
        counters = self.members.get(key)
        return counters.connections_current if counters is not None else 0

    def retain(self, keys: set[str]) -> None:
        """Forget the counters of members no longer in the pool (open connections keep theirs)."""
        for key in self.members.keys() - keys:
            del self.members[key]

    def snapshot(self) -> dict[str, dict[str, int]]:
        return {key: counters.snapshot() for key, counters in self.members.items()}


@dataclass
class Stats:
    """What one virtual server's proxy counts: its own counters and its pool's member counters."""

    virtual: Counters = field(default_factory=Counters)
    pool: PoolStats = field(default_factory=PoolStats)

    def snapshot(self) -> dict[str, Any]:
        return self.virtual.snapshot() | {"members": self.pool.snapshot()}
