"""The ruleset of the kernel engine: tcp and udp virtual servers as NAT rules of one nftables table,
`inet tandem`, written in nftables' JSON (libnftables-json) so that no value is ever parsed as syntax.

For each virtual server: a rule in the `prerouting` and `output` NAT chains sends its new connections
(NAT chains see a connection's first packet only) to the virtual server's chain, which counts them and
picks a member chain by `numgen` (round robin, or random) or by `jhash` of the client's address (source
persistence, `source-hash`), each member owning a range as wide as its weight; a member chain counts the
connection and translates its destination. Members out of service (disabled, draining, weight 0, or down
by their monitor) have no range: their connections already translated keep going (conntrack holds the
translation). With `snat` automap a rule of the `postrouting` chain gives the virtual server's
connections its source address.

A packet must never meet a map in the transaction that makes or deletes it. The kernel picks a chain's rules
by the generation current when the packet enters the chain, but a map's elements answer by the generation
current at the lookup, and a new interval map answers lookups only once its transaction is done: in both
cases the first packet of a connection can find no member, leave without NAT, and get a reset from the device.
So chains other than the base chains are named from a hash of their rules and never rewritten: a change of a
virtual server makes new chains in one transaction, and a second points the base chains at them (one does
both when no new chain holds a map: `Ruleset.transactions`); chains (and counters) no longer used are kept,
untouched, until the table's next write deletes them (`Ruleset.retired_chains`). Counters are named from what
they count and never replaced, so a count survives changes.
"""

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from ipaddress import ip_address
from typing import Any

import orjson

from tandem.dataplane.engine import ServedMember, ServedVirtual
from tandem.models.resources import LAYER4

FAMILY, TABLE = "inet", "tandem"
BASE_CHAINS = {
    "prerouting": {"type": "nat", "hook": "prerouting", "prio": -100, "policy": "accept"},
    "output": {"type": "nat", "hook": "output", "prio": -100, "policy": "accept"},
    "postrouting": {"type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"},
}
"""The table's base chains: destination NAT of connections arriving and of those of the device itself
(`output`), source NAT of those leaving."""
NOT_LAYER4 = "the nftables engine serves tcp and udp virtual servers: http and https need --engine haproxy"
SPREAD_BY_CLIENT = ("source-hash",)
RANDOM = ("random",)
"""Other methods (round-robin, least-connections) take members in turn."""


def name_of(*parts: str) -> str:
    """A chain's or counter's name for what it stands for: short, stable, never user text."""
    return "t" + hashlib.blake2b("\0".join(parts).encode(), digest_size=8).hexdigest()


@dataclass(frozen=True)
class Counted:
    """What a counter counts: a virtual server's connections, or one of its members' (`member`: its key)."""

    virtual: str
    member: str | None = None


Rules = list[list[dict[str, Any]]]


@dataclass
class Ruleset:
    """The table's content for a set of virtual servers: its chains (name → rules) and counters."""

    chains: dict[str, Rules] = field(default_factory=lambda: {name: [] for name in BASE_CHAINS})
    counters: dict[str, Counted] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    """Virtual servers (by key) this engine does not serve, and why."""
    retired_chains: frozenset[str] = frozenset()
    retired_counters: frozenset[str] = frozenset()
    """Chains and counters the table still holds, unused since its last write (the next write deletes them)."""

    def add_chain(self, rules: Rules) -> str:
        """Add a chain of `rules`, named from them (the same rules: the same chain); its name."""
        name = name_of("chain", orjson.dumps(rules, option=orjson.OPT_SORT_KEYS).decode())
        self.chains[name] = rules
        return name

    def written_after(self, previous: "Ruleset | None") -> "Ruleset":
        """This ruleset as the table holds it once `transactions(previous)` are committed: what `previous` used
        and this one does not is retired."""
        if previous is None:
            return replace(self, retired_chains=frozenset(), retired_counters=frozenset())
        return replace(self, retired_chains=frozenset(previous.chains.keys() - self.chains.keys()),
                       retired_counters=frozenset(previous.counters.keys() - self.counters.keys()))

    def transactions(self, previous: "Ruleset | None") -> list[list[dict[str, Any]]]:
        """The nftables transactions taking the table from `previous` (as written, with what it retired) to this
        ruleset, in order. The first adds the chains not in the table, with their rules, and the counters, and
        deletes what `previous` retired and this ruleset does not use again; the second replaces the base chains'
        rules, so the new chains are reached only once made. One transaction does both when no new chain looks
        a packet up in a map, and when `previous` is None (the table's content unknown: the first write, or one
        after a refusal), where it makes the table anew."""
        table = {"family": FAMILY, "name": TABLE}
        making: list[dict[str, Any]] = [{"add": {"table": table}}]
        present: set[str] = set()
        if previous is None:
            making += [{"delete": {"table": table}}, {"add": {"table": table}}]
        else:
            present = previous.chains.keys() | previous.retired_chains
            gone = previous.retired_chains - self.chains.keys()
            making += [{"flush": {"chain": _named(name)}} for name in gone]  # (their gotos go first)
            making += [{"delete": {"chain": _named(name)}} for name in gone]
            making += [{"delete": {"counter": _named(name)}}
                       for name in previous.retired_counters - self.counters.keys()]
        making += [{"add": {"chain": _named(name) | chain}} for name, chain in BASE_CHAINS.items()]
        making += [{"add": {"counter": _named(name)}} for name in self.counters]
        added = [name for name in self.chains if name not in BASE_CHAINS and name not in present]
        making += [{"add": {"chain": _named(name)}} for name in added]
        making += _rules(added, self.chains)
        pointing = [{"flush": {"chain": _named(name)}} for name in BASE_CHAINS] + _rules(BASE_CHAINS, self.chains)
        if previous is None or not any(_looks_up(self.chains[name]) for name in added):
            return [making + pointing]  # (no new map to reach too early; a table made anew is never without rules)
        return [making, pointing]


def _rules(names: Iterable[str], chains: dict[str, Rules]) -> list[dict[str, Any]]:
    return [{"add": {"rule": {"family": FAMILY, "table": TABLE, "chain": name, "expr": expressions}}}
            for name in names for expressions in chains[name]]


def _looks_up(rules: Rules) -> bool:
    """Whether a chain of `rules` looks packets up in a map."""
    return any("vmap" in expression for rule in rules for expression in rule)


def _named(name: str) -> dict[str, Any]:
    """A chain or counter of the table, by name, as a command names it."""
    return {"family": FAMILY, "table": TABLE, "name": name}


def _match(left: dict[str, Any], right: Any) -> dict[str, Any]:
    return {"match": {"op": "==", "left": left, "right": right}}


def _family(address: str) -> str:
    return "ip" if ip_address(address).version == 4 else "ip6"


def _eligible(member: ServedMember, health: str) -> bool:
    """Takes new connections: enabled (not draining, not disabled), weight above 0, not down by its monitor."""
    return member.state == "enabled" and member.weight > 0 and health != "down"


def render(virtuals: Iterable[ServedVirtual], health: Callable[[str, str], str]) -> Ruleset:
    """The ruleset serving the enabled tcp and udp `virtuals`; `health(pool key, member key)` is a member's
    state by its monitor (`up`, `down`, `unchecked`: only `down` takes it out)."""
    ruleset = Ruleset()
    for virtual in virtuals:
        if not virtual.enabled:
            continue
        if virtual.protocol not in LAYER4:
            ruleset.errors[virtual.key] = NOT_LAYER4
            continue
        family = _family(virtual.address)
        counter = name_of("virtual", virtual.key)
        ruleset.counters[counter] = Counted(virtual.key)
        rules: Rules = [[{"counter": counter}]]
        pool = virtual.pool
        ranges: list[tuple[int, int, str]] = []
        total = 0
        for member in pool.members if pool is not None else ():
            if _family(member.address) != family:  # NAT cannot change the family
                continue
            member_counter = name_of("member", virtual.key, member.key)  # kept while out of service: its count too
            ruleset.counters[member_counter] = Counted(virtual.key, member.key)
            member_chain = ruleset.add_chain([
                [{"counter": member_counter}],
                [_match({"meta": {"key": "l4proto"}}, virtual.protocol),
                 {"dnat": {"family": family, "addr": member.address, "port": member.port}}]])
            if pool is not None and _eligible(member, health(pool.key, member.key)):
                ranges.append((total, total + member.weight - 1, member_chain))
                total += member.weight
        if len(ranges) == 1:
            rules.append([{"goto": {"target": ranges[0][2]}}])
        elif ranges:
            if pool is not None and (pool.lb_method in SPREAD_BY_CLIENT or pool.persistence == "source"):
                key: dict[str, Any] = {"jhash": {"mod": total, "expr": {"payload": {"protocol": family,
                                                                                      "field": "saddr"}}}}
            else:
                key = {"numgen": {"mode": "random" if pool is not None and pool.lb_method in RANDOM else "inc",
                                  "mod": total}}
            entries = [[{"range": [low, high]} if high > low else low, {"goto": {"target": target}}]
                       for low, high, target in ranges]
            rules.append([{"vmap": {"key": key, "data": {"set": entries}}}])
        chain = ruleset.add_chain(rules)
        destination = [_match({"payload": {"protocol": family, "field": "daddr"}}, virtual.address),
                       _match({"payload": {"protocol": virtual.protocol, "field": "dport"}}, virtual.port)]
        for hook in ("prerouting", "output"):
            ruleset.chains[hook].append([*destination, {"goto": {"target": chain}}])
        if virtual.snat == "automap" and virtual.snat_address and ranges:
            ruleset.chains["postrouting"].append([
                _match({"meta": {"key": "l4proto"}}, virtual.protocol),
                _match({"ct": {"key": f"{family} daddr", "dir": "original"}}, virtual.address),
                _match({"ct": {"key": "proto-dst", "dir": "original"}}, virtual.port),
                {"snat": {"family": family, "addr": virtual.snat_address}}])
    return ruleset
