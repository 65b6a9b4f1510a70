"""A sync group cut by real network partitions, written on every side, healed and checked, the way
Jepsen tries a database: the workload and the checker of `test_netns_partitions.py` and
`bench/partitions.py`.

Three devices (a, b, c: `netlab` hosts on one bridge, address provider `loopback`) form one trust
domain and a sync-only device group syncing Common. A round: fresh pools synced everywhere; a cut
(bridge ports down: one device off the other two, or all three apart); on two sides, one change each
of every contested pool, the later side a few milliseconds after the earlier (a replacement of the
member list, a member added or removed, a description, a delete); each side's own new pool; a
virtual server using a pool the other side deletes; two virtual servers on one destination; then
the heal. The checker compares the merged configuration with what the documented rules
(docs/clustering.md) make of each pair of changes, computed here independently of Tandem's code:

- pool-level changes (replacement, description, delete) of one pool: the later wins whole;
- a member added or removed: applies beside any change but a delete of the pool or a replacement
  made after it, which it loses to;
- every loser named by a conflict record on every device, and nothing else reported;
- no acknowledged write lost without a conflict record; the rules the merge breaks reported the
  same way by every device, and served the same way (the virtual server with no pool and the later
  of two on one destination not served);
- identical configuration everywhere within a bound after the heal (its time is the figure).

A round can also kill -9 a device of the larger side after its writes and start it again before the
heal: what it acknowledged must survive. Rounds are drawn from a seed, printed, so a failure replays.
"""

import contextlib
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netlab import ADMIN_PASSWORD, Host, Lab, check, wait_until

GROUP = "dg"
POOL_ACTIONS = ("replace", "describe", "delete")
MEMBER_ACTIONS = ("add", "remove")
ACTIONS = POOL_ACTIONS + MEMBER_ACTIONS
SPLITS = ((("a",), ("b", "c")), (("b",), ("a", "c")), (("c",), ("a", "b")), (("a",), ("b",), ("c",)))
CONVERGE_TIMEOUT = 20.0


@dataclass(frozen=True)
class PoolState:
    """A pool as the checker models it: its description and its members' addresses (port 80)."""

    description: str
    members: frozenset[str]


@dataclass
class Op:
    """One acknowledged (or refused) change of a contested pool."""

    pool: str
    action: str
    device: str
    argument: Any = None
    status: int = 0

    @property
    def member(self) -> str | None:
        """The member key a member-level change names."""
        return f"{self.argument}:80" if self.action in MEMBER_ACTIONS else None


def apply(state: PoolState | None, op: Op) -> PoolState | None:
    """The pool after `op`, applied to `state` as one device would."""
    if state is None or op.action == "delete":
        return None
    if op.action == "replace":
        return PoolState(state.description, frozenset(op.argument))
    if op.action == "describe":
        return PoolState(op.argument, state.members)
    if op.action == "add":
        return PoolState(state.description, state.members | {op.argument})
    return PoolState(state.description, state.members - {op.argument})


def expected(base: PoolState, first: Op, second: Op) -> tuple[PoolState | None, list[Op]]:
    """What the rules make of two concurrent changes (`second` stamped later): the pool, and the losers."""
    pool_level = {first.action in POOL_ACTIONS, second.action in POOL_ACTIONS}
    if pool_level == {True}:
        losers = [] if first.action == second.action == "delete" else [first]
        return apply(base, second), losers
    if pool_level == {False}:
        return apply(apply(base, first), second), []
    pool_op, member_op = (first, second) if first.action in POOL_ACTIONS else (second, first)
    if pool_op.action == "delete":
        return None, [member_op]
    if pool_op.action == "replace" and member_op is first:
        return apply(base, pool_op), [member_op]
    return apply(apply(base, pool_op), member_op), []


@dataclass
class Round:
    """What one round did and found."""

    number: int
    split: tuple[tuple[str, ...], ...]
    ops: list[Op] = field(default_factory=list)
    writes: int = 0
    lost: list[str] = field(default_factory=list)
    """Acknowledged writes whose effect is gone with no conflict record naming them."""
    mismatches: list[str] = field(default_factory=list)
    """Where the merged configuration or the reports differ from the rules."""
    converge_s: float | None = None
    detect_s: float | None = None
    """From the cut until every device's status shows it."""
    conflicts_expected: int = 0
    conflicts_everywhere: int = 0
    killed: str | None = None


class PartitionLab:
    """The three devices formed into one sync group, and the rounds."""

    def __init__(self, work: Path, seed: int) -> None:
        self.lab = Lab(work, devices=("a", "b", "c"), client=None, provider="loopback")
        self.random = random.Random(seed)
        self.seed = seed

    def __enter__(self) -> "PartitionLab":
        try:
            self.lab.build()
            self.lab.start()
            self.form()
        except BaseException:
            self.lab.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.lab.close()

    @property
    def hosts(self) -> list[Host]:
        return list(self.lab.hosts.values())

    def host(self, name: str) -> Host:
        return self.lab.hosts[name]

    def form(self) -> None:
        a = self.host("a")
        for other in self.hosts[1:]:
            check(a.api.post("/api/trust/devices", json={"url": other.url, "username": "admin",
                                                          "password": ADMIN_PASSWORD,
                                                          "fingerprint": other.fingerprint}), 201)
        check(a.api.post("/api/device-groups", json={"name": GROUP, "type": "sync-only",
                                                      "members": ["a", "b", "c"], "partitions": ["Common"]}), 201)
        self.wait_in_sync(30)

    # -- reading the devices ------------------------------------------------------------------------

    def status(self, host: Host) -> dict:
        return check(host.api.get(f"/api/device-groups/{GROUP}/status"), 200).json()

    def configuration(self, host: Host) -> dict[str, dict]:
        """Pools and virtual servers of Common, by name, as the device presents them."""
        out = {}
        for kind in ("pools", "virtuals"):
            records = check(host.api.get(f"/api/{kind}?partition=Common&limit=10000"), 200).json()["records"]
            out[kind] = {r["name"]: r for r in records}
        return out

    def conflicts(self, host: Host) -> list[dict]:
        return [{k: v for k, v in c.items() if k != "detected_at"} for c in self.status(host)["conflicts"]]

    def clear_conflicts(self, host: Host) -> None:
        """Clear the write conflicts on one device; every device shows none soon after."""
        check(host.api.delete(f"/api/device-groups/{GROUP}/conflicts"), 204)
        wait_until(lambda: not any(self._write_conflicts(h) for h in self.hosts), 10,
                   f"the conflicts cleared on {host.name} cleared everywhere",
                   lambda: {h.name: self.conflicts(h) for h in self.hosts})

    def wait_in_sync(self, timeout: float) -> None:
        wait_until(lambda: all(self.status(h)["status"] == "In Sync" for h in self.hosts), timeout,
                   "the group In Sync on every device", lambda: {h.name: self.status(h) for h in self.hosts})

    def identical(self) -> dict | None:
        """The configuration, if every device holds the same; else None."""
        configurations = [self.configuration(h) for h in self.hosts]
        return configurations[0] if all(c == configurations[0] for c in configurations[1:]) else None

    # -- the network ----------------------------------------------------------------------------------

    def cut(self, split: tuple[tuple[str, ...], ...]) -> None:
        """Cut the bridge so that each side of `split` hears only itself (a one-device side is off the bridge)."""
        for side in split:
            if len(side) == 1:
                self.lab.bridge_port(side[0], up=False)

    def heal(self) -> None:
        for host in self.hosts:
            self.lab.bridge_port(host.name, up=True)

    # -- a round ----------------------------------------------------------------------------------------

    def run_round(self, number: int, contested: int = 6, kill: bool = False,
                  split: tuple[tuple[str, ...], ...] | None = None,
                  pairs: list[tuple[str, str]] | None = None) -> Round:
        """One round; `split` and `pairs` (the first and second action of each contested pool) are drawn
        from the seed unless given."""
        rng = self.random
        split = split or rng.choice(SPLITS)
        pairs = pairs or [(rng.choice(ACTIONS), rng.choice(ACTIONS)) for _ in range(contested)]
        result = Round(number, split)
        a = self.host("a")
        prefix = f"r{number}"
        bases: dict[str, PoolState] = {}
        for index in range(len(pairs)):
            name = f"{prefix}p{index}"
            members = [f"10.{number}.{index}.1", f"10.{number}.{index}.2"]
            check(a.api.post("/api/pools", json={"name": name, "members": [{"address": m, "port": 80}
                                                                            for m in members]}), 201)
            bases[name] = PoolState("", frozenset(members))
        check(a.api.post("/api/pools", json={"name": f"{prefix}doomed"}), 201)
        self.clear_conflicts(self.host(rng.choice("abc")))
        self.wait_in_sync(15)

        cut_at = time.monotonic()
        self.cut(split)
        result.detect_s = self._wait_cut_seen(split) - cut_at
        sides = rng.sample(split, 2)
        writers = [rng.choice(side) for side in sides]
        firsts, seconds = [], []
        for index, (first_action, second_action) in enumerate(pairs):
            name = f"{prefix}p{index}"
            order = rng.randrange(2)
            firsts.append(self._op(name, first_action, writers[order], order, number, index))
            seconds.append(self._op(name, second_action, writers[1 - order], 1 - order, number, index))
        uses_doomed = f"{prefix}vd"
        twin_first, twin_second = f"{prefix}x0", f"{prefix}x1"
        destination = {"address": f"127.77.{number}.2", "port": 80}
        for op in firsts:
            self._do(op, result)
        self._write(result, writers[0], "POST", "/api/pools", {"name": f"{prefix}only-{writers[0]}"})
        self._write(result, writers[0], "DELETE", f"/api/pools/Common/{prefix}doomed")
        self._write(result, writers[0], "POST", "/api/virtuals", {"name": twin_first} | destination)
        time.sleep(0.02)  # the second side's writes have the greater stamps
        for op in seconds:
            self._do(op, result)
        self._write(result, writers[1], "POST", "/api/pools", {"name": f"{prefix}only-{writers[1]}"})
        self._write(result, writers[1], "POST", "/api/virtuals", {"name": uses_doomed, "pool": f"{prefix}doomed",
                                                                  "address": f"127.77.{number}.1", "port": 80})
        self._write(result, writers[1], "POST", "/api/virtuals", {"name": twin_second} | destination)
        larger = max(split, key=len)
        if kill and len(larger) > 1:
            result.killed = rng.choice(larger)
            host = self.host(result.killed)
            host.kill_daemon()
            host.start_daemon()
            host.wait_ready()

        healed_at = time.monotonic()
        self.heal()
        try:
            config = wait_until(self.identical, CONVERGE_TIMEOUT, "identical configuration on every device")
        except AssertionError as error:
            result.mismatches.append(f"not converged: {error}")
            return result
        result.converge_s = time.monotonic() - healed_at
        self._check(result, config, bases, firsts, seconds, [f"{prefix}only-{w}" for w in writers])
        self._check_breaks(result, uses_doomed, twin_first, twin_second)
        return result

    def _wait_cut_seen(self, split: tuple[tuple[str, ...], ...]) -> float:
        """Until every device says the group is Disconnected, with exactly the devices across the cut not
        connected (their last exchange over a second old, the others' under); returns when (monotonic)."""
        side_of = {name: side for side in split for name in side}

        def seen() -> bool:
            for host in self.hosts:
                status = self.status(host)
                connected = {m["name"] for m in status["members"] if m["connected"]}
                if status["status"] != "Disconnected" or connected != set(side_of[host.name]):
                    return False
                if any((m["last_exchange"] is None or m["last_exchange"] >= 1.0) == m["connected"]
                       for m in status["members"]):
                    return False
            return True

        wait_until(seen, 10, "every device seeing the cut", lambda: {h.name: self.status(h) for h in self.hosts},
                   interval=0.02)
        return time.monotonic()

    def _op(self, pool: str, action: str, device: str, side: int, number: int, index: int) -> Op:
        argument: Any = None
        if action == "replace":
            argument = [f"10.{number}.{index}.{10 + side}"]
        elif action == "describe":
            argument = f"from side {side}"
        elif action == "add":
            argument = f"10.{number}.{index}.{100 + side}"
        elif action == "remove":
            argument = f"10.{number}.{index}.{1 + side}"
        return Op(pool, action, device, argument)

    def _do(self, op: Op, result: Round) -> None:
        path = f"/api/pools/Common/{op.pool}"
        if op.action == "replace":
            op.status = self._write(result, op.device, "PATCH", path,
                                    {"members": [{"address": m, "port": 80} for m in op.argument]})
        elif op.action == "describe":
            op.status = self._write(result, op.device, "PATCH", path, {"description": op.argument})
        elif op.action == "delete":
            op.status = self._write(result, op.device, "DELETE", path)
        elif op.action == "add":
            op.status = self._write(result, op.device, "POST", f"{path}/members", {"address": op.argument, "port": 80})
        else:
            op.status = self._write(result, op.device, "DELETE", f"{path}/members/{op.argument}:80")
        result.ops.append(op)

    def _write(self, result: Round, device: str, method: str, path: str, body: dict | None = None) -> int:
        response = self.host(device).api.request(method, path, json=body)
        check(response)
        result.writes += 1
        return response.status_code

    # -- the checker ------------------------------------------------------------------------------------

    def _check(self, result: Round, config: dict, bases: dict[str, PoolState], firsts: list[Op],
               seconds: list[Op], created: list[str]) -> None:
        wanted: set[tuple[str, str | None, str]] = set()
        for first, second in zip(firsts, seconds, strict=True):
            state, losers = expected(bases[first.pool], first, second)
            wanted |= {(op.pool, op.member, op.device) for op in losers}
            body = config["pools"].get(first.pool)
            actual = PoolState(body["description"], frozenset(m["address"] for m in body["members"])) \
                if body else None
            if actual != state:
                result.mismatches.append(f"{first.pool}: {first.action} on {first.device} then {second.action} on "
                                         f"{second.device} made {actual}, the rules say {state}")
        for name in created:
            if name not in config["pools"]:
                result.lost.append(f"pool {name} is gone")
        result.conflicts_expected = len(wanted)
        for host in self.hosts:  # records replicate after the configuration: give them a moment
            with contextlib.suppress(AssertionError):
                wait_until(lambda host=host: self._write_conflicts(host) >= wanted, 10, "conflict records")
        reported = [self._write_conflicts(h) for h in self.hosts]
        result.conflicts_everywhere = len(set.intersection(*reported) & wanted)
        for host, found in zip(self.hosts, reported, strict=True):
            if found != wanted:
                result.mismatches.append(f"{host.name} reports conflicts {sorted(found - wanted, key=str)} beyond "
                                         f"and lacks {sorted(wanted - found, key=str)}")
        for op in firsts + seconds:
            body = config["pools"].get(op.pool)
            if not _effect_present(op, body, bases[op.pool]) and (op.pool, op.member, op.device) not in reported[0]:
                result.lost.append(f"{op.action} {op.argument} of {op.pool} on {op.device}")

    def _write_conflicts(self, host: Host) -> set[tuple[str, str | None, str]]:
        """(pool, member or None, losing device) of the write conflicts a device reports."""
        return {(c["name"], c.get("member"), c["loser"]["device"]) for c in self.conflicts(host)
                if c["type"] == "write"}

    def _check_breaks(self, result: Round, uses_doomed: str, twin_first: str, twin_second: str) -> None:
        """The rules the merge breaks, reported and served the same way by every device."""
        breaks = {(uses_doomed, "reference"), (twin_second, "destination")}

        def reported(host: Host) -> set[tuple[str, str]]:
            return {(c["name"], c["rule"]) for c in self.conflicts(host) if c["type"] == "integrity"}

        def served(host: Host) -> set[str]:
            virtuals = check(host.api.get("/api/dataplane"), 200).json()["virtuals"]
            return {key.rsplit("/", 1)[1] for key in virtuals}

        for host in self.hosts:
            found = reported(host)
            if not breaks <= found:
                result.mismatches.append(f"{host.name} reports rule breaks {sorted(found)}, not {sorted(breaks)}")
            try:
                wait_until(lambda host=host: twin_first in served(host) and not served(host) & {uses_doomed,
                                                                                                   twin_second},
                           5, f"{host.name} serving {twin_first} and neither {uses_doomed} nor {twin_second}")
            except AssertionError as error:
                result.mismatches.append(str(error))


def _effect_present(op: Op, body: dict | None, base: PoolState) -> bool:
    """Whether what `op` wrote shows in the merged pool."""
    if op.action == "delete":
        return body is None
    if body is None:
        return False
    members = {m["address"] for m in body["members"]}
    if op.action == "describe":
        return body["description"] == op.argument
    if op.action == "add":
        return op.argument in members
    if op.action == "remove":
        return op.argument not in members
    return set(op.argument) <= members and not (base.members - set(op.argument)) & members


def summary(rounds: list[Round]) -> dict[str, Any]:
    """The figures of a run."""
    times = [r.converge_s for r in rounds if r.converge_s is not None]
    return {
        "rounds": len(rounds),
        "writes_acknowledged": sum(r.writes for r in rounds),
        "lost_without_conflict": sum(len(r.lost) for r in rounds),
        "rounds_not_converged": sum(r.converge_s is None for r in rounds),
        "rounds_with_mismatches": sum(bool(r.mismatches) for r in rounds),
        "heal_to_identical_median_s": round(statistics.median(times), 3) if times else None,
        "heal_to_identical_max_s": round(max(times), 3) if times else None,
        "cut_seen_max_s": round(max(r.detect_s for r in rounds if r.detect_s is not None), 3),
        "conflicts_reported_everywhere": sum(r.conflicts_everywhere for r in rounds),
        "conflicts_expected": sum(r.conflicts_expected for r in rounds),
        "kills": sum(r.killed is not None for r in rounds),
    }
