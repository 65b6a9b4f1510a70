"""Sync under faults: members killed with -9 mid-stream, a member that missed many commits (by log and
by full load), and a network partition with writes on both sides."""

import random
import threading
import time
from dataclasses import dataclass, field

import httpx
import pytest
from cluster_helpers import GROUP, Cluster, api_session, check, pool_names

from waiting import wait_until


@dataclass
class Ledger:
    """What the writer was told: acknowledged writes are certain, unanswered ones may or may not be applied."""

    pools: dict[str, str | None] = field(default_factory=dict)
    """Acknowledged pools -> their last acknowledged description (None: a later update went unanswered)."""
    maybe_pools: set[str] = field(default_factory=set)
    acked_members: dict[str, set[str]] = field(default_factory=dict)
    tried_members: dict[str, set[str]] = field(default_factory=dict)
    touched: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: dict(acked=0, refused=0, unanswered=0, rejected=0))
    acked_by: dict[str, list[float]] = field(default_factory=dict)


def write_randomly(cluster: Cluster, stop: threading.Event, ledger: Ledger, seed: int) -> None:
    """Create pools, add members, update descriptions on random members until `stop`."""
    rng = random.Random(seed)
    sessions = {n.name: api_session(n.device, timeout=5) for n in cluster}
    i = 0
    try:
        while not stop.is_set():
            i += 1
            name = rng.choice(cluster.names)
            api = sessions[name]
            now = time.monotonic()
            # updates only of pools known for sure, not touched in the last 20 ms (distinct clock stamps)
            known = [p for p, d in ledger.pools.items() if d is not None and now - ledger.touched[p] > 0.02]
            roll = rng.random()
            if roll < 0.55 or not known:
                pool = f"k-{i}"
                address = f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"
                kind, target = "create", pool
                request = ("POST", "/api/pools", {"name": pool, "description": "v0",
                                                  "members": [{"address": address, "port": 80}]})
            elif roll < 0.8:
                pool = rng.choice(known)
                address = f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"
                kind, target = "member", pool
                request = ("POST", f"/api/pools/Common/{pool}/members", {"address": address, "port": 8080})
            else:
                pool = rng.choice(known)
                kind, target = "update", pool
                request = ("PATCH", f"/api/pools/Common/{pool}", {"description": f"v{i}"})
            if kind == "member":
                ledger.tried_members.setdefault(pool, set()).add(f"{address}:8080")
            elif kind == "create":
                ledger.tried_members.setdefault(pool, set()).add(f"{address}:80")
            ledger.touched[target] = now
            try:
                response = api.request(request[0], request[1], json=request[2])
            except httpx.ConnectError:
                ledger.counts["refused"] += 1  # never reached a device: nothing applied
                continue
            except httpx.HTTPError:
                ledger.counts["unanswered"] += 1
                if kind == "create":
                    ledger.maybe_pools.add(pool)
                elif kind == "update":
                    ledger.pools[pool] = None
                continue
            if response.status_code >= 400:  # e.g. the pool has not reached this member yet
                assert response.status_code in (404, 409, 422), response.text
                ledger.counts["rejected"] += 1
                continue
            assert response.status_code in (200, 201), response.text
            ledger.counts["acked"] += 1
            ledger.acked_by.setdefault(name, []).append(time.monotonic())
            if kind == "create":
                ledger.pools[pool] = "v0"
                ledger.acked_members.setdefault(pool, set()).add(f"{address}:80")
            elif kind == "member":
                ledger.acked_members.setdefault(pool, set()).add(f"{address}:8080")
            elif ledger.pools[pool] is not None:
                ledger.pools[pool] = request[2]["description"]
            time.sleep(0.002)
    finally:
        for session in sessions.values():
            session.close()


def test_members_killed_with_minus_9_during_writes_converge_and_keep_every_acknowledged_write(cluster_factory):
    cluster = cluster_factory()
    cluster.start("dev-1", "dev-2", "dev-3")
    cluster.form()
    ledger, stop = Ledger(), threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            write_randomly(cluster, stop, ledger, seed=7)
        except BaseException as exc:
            errors.append(exc)

    writer = threading.Thread(target=run, name="writer")
    writer.start()
    restarted = {}
    try:
        for victim in ("dev-2", "dev-3"):
            time.sleep(1.0)
            cluster[victim].kill()
            time.sleep(0.7)
            cluster[victim].start()
            restarted[victim] = time.monotonic()
        time.sleep(1.5)
    finally:
        stop.set()
        writer.join(30)
    assert not errors, errors
    assert ledger.counts["acked"] >= 100, ledger.counts
    for victim, at in restarted.items():  # the restarted members took writes again
        assert any(t > at for t in ledger.acked_by.get(victim, [])), (victim, ledger.counts)

    config = cluster.wait_converged(timeout=60)
    print("writes:", ledger.counts)
    pools = {p["name"]: p for p in config["pools"].values()}
    missing = sorted(set(ledger.pools) - set(pools))
    assert not missing, f"acknowledged pools lost: {missing[:10]} ({len(missing)})"
    phantom = sorted(set(pools) - set(ledger.pools) - ledger.maybe_pools)
    assert not phantom, f"pools nobody created: {phantom[:10]}"
    for name, description in ledger.pools.items():
        if description is not None:
            assert pools[name]["description"] == description, (name, pools[name])
        members = {f"{m['address']}:{m['port']}" for m in pools[name]["members"]}
        assert ledger.acked_members.get(name, set()) <= members, (name, members)
        assert members <= ledger.tried_members[name], (name, members)


def stamp_writes(one, two, count: int) -> set[str]:
    """`count` writes alternating between `one` and `two`: new pools, updates and deletes of old pools."""
    created = set()
    for i in range(count):
        api = (one, two)[i % 2].api
        if i % 5 == 3 and i // 5 < 15:
            check(api.patch(f"/api/pools/Common/old-{i // 5}", json={"description": "updated"}), 200)
        elif i % 5 == 4 and i // 5 < 15:
            check(api.delete(f"/api/pools/Common/old-{15 + i // 5}"), 204)
        else:
            check(api.post("/api/pools", json={"name": f"new-{i}"}), 201)
            created.add(f"new-{i}")
    return created


@pytest.mark.parametrize("retention", [20, None], ids=["full-load", "incremental"])
def test_a_member_that_missed_many_commits_catches_up(cluster_factory, retention):
    cluster = cluster_factory()
    extra = ["--log-retention", str(retention)] if retention else []
    one, two, three = cluster.start("dev-1", "dev-2", "dev-3", extra_args=extra)
    cluster.form()
    for i in range(30):
        member = {"address": "10.5.0.1", "port": i + 1}
        check(one.api.post("/api/pools", json={"name": f"old-{i}", "members": [member]}), 201)
    cluster.wait_converged()
    three.stop()
    created = stamp_writes(one, two, 150)
    time.sleep(1.2)  # a status round: the logs are trimmed to --log-retention
    log_size = three.device.log_path.stat().st_size
    three.start()
    config = cluster.wait_converged(timeout=45)
    assert pool_names(config) == created | {f"old-{i}" for i in range(15)}
    assert all(config["pools"][f"Common/old-{i}"]["description"] == "updated" for i in range(15))
    assert config["pools"]["Common/old-0"]["members"][0]["port"] == 1
    # the device log names the path: a full load is a merging snapshot applied by the lagging member
    with three.device.log_path.open() as log:
        log.seek(log_size)
        full_loads = [line for line in log if "applied merging snapshot of dg" in line]
    if retention:
        assert full_loads, "dev-3 did not catch up by a full load"
    else:
        assert not full_loads, f"dev-3 needed a full load: {full_loads}"


def test_a_partition_heals_into_one_configuration_and_reports_the_conflict(cluster_factory):
    cluster = cluster_factory()
    one, two, three = cluster.start("dev-1", "dev-2", "dev-3", proxied=True)
    cluster.form()
    check(one.api.post("/api/pools", json={"name": "contested", "description": "before"}), 201)
    check(one.api.post("/api/pools", json={"name": "doomed"}), 201)
    cluster.wait_converged()

    cluster.cut()

    def alone(node) -> bool:
        status = node.status()
        return status["status"] == "Disconnected" and all(
            m["connected"] is (m["name"] == node.name) for m in status["members"])

    wait_until(lambda: all(alone(n) for n in cluster), 10, "every device cut off from the others",
               detail=lambda: cluster.statuses())
    check(one.api.post("/api/pools", json={"name": "left-only"}), 201)
    check(one.api.patch("/api/pools/Common/contested", json={"description": "from dev-1"}), 200)
    time.sleep(0.05)  # dev-2 writes later: its stamp is the greater one
    check(two.api.post("/api/pools", json={"name": "right-only"}), 201)
    check(two.api.patch("/api/pools/Common/contested", json={"description": "from dev-2"}), 200)
    check(three.api.delete("/api/pools/Common/doomed"), 204)
    time.sleep(1.5)  # longer than an anti-entropy round: the cut holds
    assert two.api.get("/api/pools/Common/left-only").status_code == 404
    assert one.api.get("/api/pools/Common/right-only").status_code == 404
    assert one.api.get("/api/pools/Common/doomed").status_code == 200

    cluster.heal()
    config = cluster.wait_converged()
    assert pool_names(config) == {"contested", "left-only", "right-only"}
    assert config["pools"]["Common/contested"]["description"] == "from dev-2"

    def conflict_of(node) -> dict | None:
        conflicts = [c for c in node.status()["conflicts"] if c["name"] == "contested"]
        return conflicts[0] if conflicts else None

    wait_until(lambda: all(conflict_of(n) for n in cluster), 10, "the conflict on contested reported everywhere",
               detail=lambda: cluster.statuses())
    for node in cluster:
        conflict = conflict_of(node)
        assert (conflict["kind"], conflict["partition"]) == ("pools", "Common"), conflict
        assert sorted(conflict["devices"]) == ["dev-1", "dev-2"], conflict
        assert conflict["winner"]["device"] == "dev-2" and conflict["loser"]["device"] == "dev-1", conflict
        assert conflict["winner"]["value"]["description"] == "from dev-2", conflict
        assert conflict["loser"]["value"]["description"] == "from dev-1", conflict
        assert len(node.status()["conflicts"]) == 1, node.status()

    check(one.api.delete(f"/api/device-groups/{GROUP}/conflicts"), 204)
    assert one.status()["conflicts"] == []
    wait_until(lambda: all(n.status()["conflicts"] == [] for n in cluster), 5, "the conflict cleared everywhere",
               detail=lambda: cluster.statuses())
    time.sleep(1.2)  # anti-entropy does not bring it back
    for node in cluster:
        status = node.status()
        assert (status["conflicts"], status["status"]) == ([], "In Sync"), status
