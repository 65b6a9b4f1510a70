"""Choosing the pool member for a new connection: `round-robin`, `least-connections`, `random` and
`source-hash` (the client's address picks the member, so a client keeps its member while the pool is unchanged).

Only members that are enabled and not marked down by the pool's monitor are eligible
("unchecked", before a monitor's first answer, counts as eligible). The balancer gives the order
in which to try members for one connection, each member at most once, so that the proxy can fall
back to the next one when a member refuses or times out. But for `random`, it is deterministic: the same
state (and client) gives the same order.
"""

import random
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple, get_args

from tandem.models.fields import member_key
from tandem.models.resources import LbMethod

LB_METHODS: tuple[str, ...] = get_args(LbMethod)


class Target(NamedTuple):
    """A pool member as the balancer sees it."""

    address: str
    port: int
    enabled: bool
    key: str
    """`address:port` (IPv6 in brackets), as in the API."""


def always_up(key: str) -> str:
    """The health of members of a pool without a monitor."""
    return "up"


def no_connections(key: str) -> int:
    return 0


class Balancer:
    """Member order for new connections of one pool.

    `health(key)` gives "up", "down" or "unchecked"; `connections(key)` the member's open
    connections (what least-connections compares).
    """

    def __init__(self, method: str, members: Iterable[tuple[str, int, bool]],
                 health: Callable[[str], str] = always_up,
                 connections: Callable[[str], int] = no_connections) -> None:
        if method not in LB_METHODS:
            raise ValueError(f"unknown lb method {method!r}, expected one of {', '.join(LB_METHODS)}")
        self.method = method
        self.members: tuple[Target, ...] = tuple(
            Target(address, port, enabled, member_key(address, port)) for address, port, enabled in members)
        self.health = health
        self.connections = connections
        self._next = 0

    def eligible(self) -> list[Target]:
        """The members that may take new connections, in configuration order."""
        health = self.health
        return [m for m in self.members if m.enabled and health(m.key) != "down"]

    def candidates(self, client: str = "") -> Iterator[Target]:
        """The eligible members in the order to try them for one new connection, lazily; taking the
        first one advances the rotation.

        round-robin: in configuration order, starting after the member chosen last time.
        least-connections: fewest open connections first, ties in round-robin order.
        random, source-hash: in configuration order from a random member, or from the one the hash of the
        `client` address names.
        """
        members = self.members
        count = len(members)
        start = self._next % count if count else 0
        health = self.health
        if count and self.method in ("random", "source-hash"):
            start = random.randrange(count) if self.method == "random" else zlib.crc32(client.encode()) % count
            for offset in range(count):
                member = members[(start + offset) % count]
                if member.enabled and health(member.key) != "down":
                    yield member
            return
        if self.method == "round-robin":
            first = True
            for offset in range(count):
                index = (start + offset) % count
                member = members[index]
                if member.enabled and health(member.key) != "down":
                    if first:
                        self._next, first = index + 1, False
                    yield member
            return
        connections = self.connections
        ranked = []
        for offset in range(count):
            index = (start + offset) % count
            member = members[index]
            if member.enabled and health(member.key) != "down":
                ranked.append((connections(member.key), offset, index))
        if not ranked:
            return
        best = min(ranked)
        self._next = best[2] + 1
        yield members[best[2]]
        ranked.remove(best)
        ranked.sort()
        for _, _, index in ranked:
            yield members[index]

    def pick(self, client: str = "") -> Target | None:
        """The member for one new connection (from `client`), or None when no member is eligible."""
        return next(self.candidates(client), None)
