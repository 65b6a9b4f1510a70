"""A pool and its members merge as one unit: devices (stores with their configuration service) written
on both sides of a cut, then every commit delivered everywhere, as the sync engine would."""

import time

import pytest

from tandem.config import ConfigService, integrity
from tandem.config.integrity import violations
from tandem.config.upgrade import upgrade
from tandem.errors import Conflict, NotFound
from tandem.models import Partition, Pool, PoolMember, VirtualServer
from tandem.peering import mirror
from tandem.store import ScopeRule, Store
from tandem.sync import conflicts
from tandem.sync.replica import Replica

SCOPE = "dg"


class Node:
    """One device without a network: its store, configuration and replica; `sent` is its own commits."""

    def __init__(self, tmp_path, name: str) -> None:
        self.name = name
        self.store = Store(tmp_path / f"{name}.db", index_of=integrity.references)
        self.store.scope_of = lambda kind, partition, obj: ScopeRule(SCOPE) if partition or kind == "partitions" \
            else ScopeRule(sequenced=False)
        self.config = ConfigService(self.store)
        self.replica = Replica(self.store)
        self.sent: list[dict] = []
        self.store.on_commit.append(self.sent.extend)

    def pool(self, name: str) -> dict | None:
        try:
            return self.config.read(Pool, {"partition": "Common", "name": name})
        except NotFound:
            return None

    def members(self, name: str) -> list[str]:
        pool = self.pool(name)
        return [f"{m['address']}:{m['port']}" for m in pool["members"]] if pool else []

    def conflicts(self) -> list[dict]:
        names = {node_id: name for node_id, name in NAMES.items()}
        return [c.model_dump(exclude={"detected_at"}) for c in conflicts.views(self.store, ["Common"], names)]

    def configuration(self) -> dict:
        return {kind: [present for present in self.config.page(model, _all())[0]]
                for kind, model in (("pools", Pool), ("virtuals", VirtualServer))}


NAMES: dict[str, str] = {}


def pool_at(pool: str) -> dict[str, str]:
    """The identity of a pool in Common, as the parent of its members."""
    return {"partition": "Common", "pool": pool}


def member_at(pool: str, key: str) -> dict[str, str]:
    return pool_at(pool) | {"member": key}

def _all():
    from tandem.config.query import Query

    return Query(limit=10_000)


def deliver(nodes: list[Node]) -> None:
    """Every node applies every other node's commits, until nothing new is written (conflict records
    are commits of their own)."""
    while True:
        before = sum(len(n.sent) for n in nodes)
        applied = 0
        for source in nodes:
            for target in nodes:
                if target is not source:
                    applied += target.replica.apply_commits(SCOPE, list(source.sent))[0]
        if applied == 0 and sum(len(n.sent) for n in nodes) == before:
            return


@pytest.fixture
def cluster(tmp_path):
    nodes = [Node(tmp_path, name) for name in ("a", "b", "c")]
    NAMES.clear()
    NAMES.update({n.store.device_id: n.name for n in nodes})
    nodes[0].config.create(Partition(name="Common"))
    deliver(nodes)
    yield nodes
    for node in nodes:
        node.store.close()


def member(address: str, port: int = 80) -> PoolMember:
    return PoolMember(address=address, port=port)


def later() -> None:
    """Let the wall clock move on: the next write has the greater stamp."""
    time.sleep(0.003)


def converged(nodes: list[Node]) -> dict:
    deliver(nodes)
    first = nodes[0].configuration()
    for node in nodes[1:]:
        assert node.configuration() == first, f"{node.name} differs from {nodes[0].name}"
        assert node.conflicts() == nodes[0].conflicts(), f"{node.name}'s conflicts differ"
    return first


def test_a_member_added_while_its_pool_is_deleted_is_a_conflict_and_never_reattaches(cluster):
    a, b, c = cluster
    a.config.create(Pool(name="p"))
    deliver(cluster)
    deliver([b, c])
    b.config.create(member("10.0.0.9"), parent=pool_at("p"))          # {b, c}
    deliver([b, c])
    later()
    a.config.delete(Pool, {"partition": "Common", "name": "p"})         # {a}
    converged(cluster)
    for node in cluster:
        assert node.pool("p") is None
        (conflict,) = node.conflicts()
        assert (conflict["kind"], conflict["name"], conflict["member"]) == ("pools", "p", "10.0.0.9:80")
        assert conflict["loser"] == {"device": "b", "value": {"address": "10.0.0.9", "port": 80, "state": "enabled",
                                                            "weight": 1, "description": "", "enabled": True}}
        assert conflict["winner"] == {"device": "a", "value": None}
        assert "deleted the pool" in conflict["message"]
    c.config.create(Pool(name="p"))
    converged(cluster)
    assert all(node.members("p") == [] for node in cluster)


def test_two_replacements_of_the_members_do_not_merge_into_their_union(cluster):
    a, b, _ = cluster
    a.config.create(Pool(name="q", members=[member("10.0.0.1")]))
    deliver(cluster)
    a.config.update(Pool, {"partition": "Common", "name": "q"}, {"members": [{"address": "10.0.0.2", "port": 80}]})
    later()
    b.config.update(Pool, {"partition": "Common", "name": "q"}, {"members": [{"address": "10.0.0.3", "port": 80}]})
    converged(cluster)
    for node in cluster:
        assert node.members("q") == ["10.0.0.3:80"]
        (conflict,) = node.conflicts()
        assert conflict["winner"]["device"] == "b" and conflict["loser"]["device"] == "a"
        assert [m["address"] for m in conflict["loser"]["value"]["members"]] == ["10.0.0.2"]
        assert [m["address"] for m in conflict["winner"]["value"]["members"]] == ["10.0.0.3"]


def test_the_same_pool_created_on_both_sides_is_one_or_the_other(cluster):
    a, b, _ = cluster
    a.config.create(Pool(name="twin", members=[member("10.0.0.1")], description="a"))
    later()
    b.config.create(Pool(name="twin", members=[member("10.0.0.2")], description="b"))
    b.config.create(member("10.0.0.3"), parent=pool_at("twin"))
    converged(cluster)
    for node in cluster:
        assert node.pool("twin")["description"] == "b" and node.members("twin") == ["10.0.0.2:80", "10.0.0.3:80"]
        assert [c["loser"]["device"] for c in node.conflicts()] == ["a"]


@pytest.mark.parametrize("update_last", [True, False])
def test_delete_against_update_keeps_or_drops_the_pool_whole(cluster, update_last):
    a, b, _ = cluster
    a.config.create(Pool(name="r", members=[member("10.0.0.1")]))
    b.config.create(Pool(name="unrelated"))
    deliver(cluster)

    def delete():
        a.config.delete(Pool, {"partition": "Common", "name": "r"})

    def update():
        b.config.update(Pool, {"partition": "Common", "name": "r"}, {"description": "x"})

    first, last = (delete, update) if update_last else (update, delete)
    first()
    later()
    last()
    converged(cluster)
    for node in cluster:
        (conflict,) = node.conflicts()
        if update_last:
            assert node.pool("r")["description"] == "x" and node.members("r") == ["10.0.0.1:80"]
            assert conflict["loser"] == {"device": "a", "value": None}
        else:
            assert node.pool("r") is None
            assert conflict["loser"]["device"] == "b"
            assert conflict["loser"]["value"]["description"] == "x"
            assert [m["address"] for m in conflict["loser"]["value"]["members"]] == ["10.0.0.1"]


def test_changes_of_different_members_all_apply(cluster):
    a, b, c = cluster
    a.config.create(Pool(name="s", members=[member("10.0.0.1"), member("10.0.0.2")]))
    deliver(cluster)
    a.config.create(member("10.0.0.5"), parent=pool_at("s"))
    b.config.delete(PoolMember, member_at("s", "10.0.0.1:80"))
    c.config.update(PoolMember, member_at("s", "10.0.0.2:80"), {"enabled": False})
    b.config.update(Pool, {"partition": "Common", "name": "s"}, {"description": "changed"})
    config = converged(cluster)
    (pool,) = [p for p in config["pools"] if p["name"] == "s"]
    assert pool["description"] == "changed"
    assert [(m["address"], m["enabled"]) for m in pool["members"]] == [("10.0.0.2", False), ("10.0.0.5", True)]
    assert a.conflicts() == []
    assert c.config.read(PoolMember, member_at("s", "10.0.0.2:80"))["enabled"] is False
    with pytest.raises(NotFound):
        c.config.read(PoolMember, member_at("s", "10.0.0.1:80"))
    a.config.update(Pool, {"partition": "Common", "name": "s"}, {"members": [{"address": "10.0.0.1", "port": 80}]})
    assert a.config.read(PoolMember, member_at("s", "10.0.0.1:80"))["enabled"] is True  # the replacement hides overlays
    with pytest.raises(NotFound):
        a.config.read(PoolMember, member_at("s", "10.0.0.5:80"))


def test_the_same_member_changed_on_both_sides_is_a_conflict(cluster):
    a, b, _ = cluster
    a.config.create(Pool(name="t", members=[member("10.0.0.1")]))
    deliver(cluster)
    a.config.update(PoolMember, member_at("t", "10.0.0.1:80"), {"description": "from a"})
    later()
    b.config.update(PoolMember, member_at("t", "10.0.0.1:80"), {"description": "from b"})
    converged(cluster)
    assert a.pool("t")["members"][0]["description"] == "from b"
    (conflict,) = a.conflicts()
    assert conflict["member"] == "10.0.0.1:80" and conflict["loser"]["value"]["description"] == "from a"


def test_a_single_member_change_and_a_replacement_follow_their_stamps(cluster):
    a, b, _ = cluster
    a.config.create(Pool(name="u", members=[member("10.0.0.1")]))
    deliver(cluster)
    b.config.create(member("10.0.0.7"), parent=pool_at("u"))        # before the replacement: lost
    later()
    a.config.update(Pool, {"partition": "Common", "name": "u"}, {"members": [{"address": "10.0.0.2", "port": 80}]})
    later()
    b.config.create(member("10.0.0.8"), parent=pool_at("u"))        # after it: applies on top
    converged(cluster)
    assert a.members("u") == ["10.0.0.2:80", "10.0.0.8:80"]
    (conflict,) = a.conflicts()
    assert conflict["member"] == "10.0.0.7:80" and "replaced the pool's members" in conflict["message"]


def test_conflicts_reach_a_member_that_catches_up_by_a_full_load(cluster):
    a, b, c = cluster
    a.config.create(Pool(name="v"))
    deliver(cluster)
    a.config.update(Pool, {"partition": "Common", "name": "v"}, {"description": "a"})
    later()
    b.config.update(Pool, {"partition": "Common", "name": "v"}, {"description": "b"})
    deliver([a, b])
    assert len(a.conflicts()) == 1 and c.conflicts() == []
    c.replica.apply_snapshot(SCOPE, ["Common"], a.replica.versions(["Common"]), dict(a.store.vector(SCOPE)),
                             replace=False)
    assert c.conflicts() == a.conflicts()


def test_merged_rule_breaks_are_found_the_same_way_everywhere(cluster):
    a, b, _ = cluster
    a.config.create(Pool(name="w"))
    deliver(cluster)
    a.config.delete(Pool, {"partition": "Common", "name": "w"})
    b.config.create(VirtualServer(name="uses-w", address="192.0.2.1", port=80, pool="w"))
    a.config.create(VirtualServer(name="first", address="192.0.2.2", port=80))
    later()
    b.config.create(VirtualServer(name="second", address="192.0.2.2", port=80))
    converged(cluster)
    for node in cluster:
        found = sorted((v.name, v.rule, v.other, v.served) for v in violations(node.store, ["Common"]))
        assert found == [("second", "destination", "/Common/first", False),
                         ("uses-w", "reference", "/Common/w", False)]


@pytest.mark.parametrize("delete_first", [True, False])
def test_a_third_device_records_a_lost_member_change_whichever_write_it_hears_first(cluster, delete_first):
    a, b, c = cluster
    a.config.create(Pool(name="x", members=[member("10.0.0.1")]))
    deliver(cluster)
    a.config.delete(Pool, {"partition": "Common", "name": "x"})
    b.config.update(PoolMember, member_at("x", "10.0.0.1:80"), {"enabled": False})
    for source in (a, b) if delete_first else (b, a):
        c.replica.apply_commits(SCOPE, list(source.sent))
    (conflict,) = c.conflicts()
    assert (conflict["member"], conflict["loser"]["device"], conflict["winner"]) == (
        "10.0.0.1:80", "b", {"device": "a", "value": None})


def test_a_member_change_recorded_lost_is_withdrawn_when_what_hid_it_loses_in_turn(cluster):
    a, b, c = cluster
    a.config.create(Pool(name="y"))
    deliver(cluster)
    c.config.create(member("10.0.0.9"), parent=pool_at("y"))
    a.config.delete(Pool, {"partition": "Common", "name": "y"})
    later()
    b.config.update(Pool, {"partition": "Common", "name": "y"}, {"description": "kept"})
    a.replica.apply_commits(SCOPE, list(c.sent))  # a hears the member change first: hidden by its delete
    assert [conflict["member"] for conflict in a.conflicts()] == ["10.0.0.9:80"]
    converged(cluster)
    for node in cluster:
        assert node.members("y") == ["10.0.0.9:80"] and node.pool("y")["description"] == "kept"
        (conflict,) = node.conflicts()
        assert "member" not in conflict and conflict["loser"] == {"device": "a", "value": None}


def test_a_store_of_the_earlier_format_keeps_its_members(tmp_path):
    store = Store(tmp_path / "old.db", index_of=integrity.references)
    with store.transaction() as txn:  # as the earlier version stored a pool and its members
        txn.put("partitions", "", "Common", {"name": "Common", "description": ""})
        txn.put("pools", "Common", "web", {"partition": "Common", "name": "web", "lb_method": "round-robin",
                                            "monitor": None, "description": ""})
        for address in ("10.0.0.2", "10.0.0.1", "10.0.0.3"):
            txn.put("members", "Common", f"web/{address}:80",
                    {"address": address, "port": 80, "enabled": True, "description": ""})
        txn.delete("members", "Common", "web/10.0.0.3:80")
        txn.put("virtuals", "Common", "v", {"partition": "Common", "name": "v", "address": "192.0.2.1", "port": 80,
                                            "protocol": "tcp", "pool": "web", "traffic_group": "traffic-group-1",
                                            "enabled": True, "description": ""})
    assert upgrade(store) == 1 and upgrade(store) == 0
    config = ConfigService(store)
    assert [m["address"] for m in config.read(Pool, {"partition": "Common", "name": "web"})["members"]] == [
        "10.0.0.1", "10.0.0.2"]
    with pytest.raises(Conflict, match="used by virtual /Common/v"):  # the reference index was built
        config.delete(Pool, {"partition": "Common", "name": "web"})
    config.create(member("10.0.0.4"), parent=pool_at("web"))
    config.delete(PoolMember, member_at("web", "10.0.0.1:80"))
    assert [m["address"] for m in config.read(Pool, {"partition": "Common", "name": "web"})["members"]] == [
        "10.0.0.2", "10.0.0.4"]
    store.close()


def test_a_mirror_sends_one_member_of_a_large_pool_not_the_pool(tmp_path):
    source, target = Node(tmp_path, "source"), Node(tmp_path, "target")
    for node in (source, target):
        node.config.create(Partition(name="Common"))
    source.config.create(Pool(name="big", members=[member(f"10.0.{i // 250}.{i % 250}") for i in range(1000)]))
    assert mirror.apply_state(target.store, "Common", mirror.snapshot(source.store, "Common")) == 1
    pool_commit = target.store.version("pools", "Common", "big").hlc
    source.config.create(member("10.9.9.9"), parent=pool_at("big"))
    source.config.delete(PoolMember, member_at("big", "10.0.0.1:80"))
    changes = [[kind, name, mirror.presented(source.store, kind, "Common", name)]
               for kind, name in (("members", "big/10.9.9.9:80"), ("members", "big/10.0.0.1:80"))]
    assert changes[1][2] is None
    assert mirror.apply_changes(target.store, "Common", changes) == 2
    assert mirror.digest(mirror.snapshot(target.store, "Common")) == mirror.digest(mirror.snapshot(source.store,
                                                                                                   "Common"))
    assert target.store.version("pools", "Common", "big").hlc == pool_commit  # the pool was not rewritten
    with pytest.raises(ValueError, match="is not"):
        mirror.apply_changes(target.store, "Common", [["members", "big/10.1.1.1:80",
                                                       {"address": "10.2.2.2", "port": 80}]])
