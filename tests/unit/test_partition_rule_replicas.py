"""The partition rule on a replica: an object using another partition's (not `Common`'s), replicated from an
older peer that did not check the rule, is reported, its use counts as absent when serving, and it holds
nothing of the partition it reaches into."""

import pytest

from dataplane_desired import desired_of
from tandem.config import ConfigService, integrity
from tandem.config.integrity import violations
from tandem.config.objects import write_object
from tandem.errors import Invalid
from tandem.models import Monitor, Partition, Pool, Resource, VirtualServer
from tandem.store import ScopeRule, Store
from tandem.sync.replica import Replica

SCOPE = "dg"


def _store(tmp_path, name: str) -> Store:
    store = Store(tmp_path / f"{name}.db", index_of=integrity.references)
    store.scope_of = lambda kind, partition, obj: ScopeRule(SCOPE) if partition or kind == "partitions" \
        else ScopeRule(sequenced=False)
    return store


@pytest.fixture
def replicated(tmp_path):
    """A device that applied what an older peer wrote without the partition rule; and that peer's store."""
    old, new = _store(tmp_path, "old"), _store(tmp_path, "new")
    sent: list[dict] = []
    old.on_commit.append(sent.extend)
    config = ConfigService(old)
    for name in ("Common", "A", "B"):
        config.create(Partition(name=name))
    config.create(Monitor(partition="B", name="m", type="tcp"))
    config.create(Pool(partition="B", name="p"))
    config.create(Pool(name="cp"))
    older: list[Resource] = [  # written as an older peer would: unchecked
        Pool(partition="A", name="q", monitor="/B/m"),
        VirtualServer(partition="A", name="v", address="192.0.2.1", port=80, pool="/B/p"),
        VirtualServer(partition="A", name="w", address="192.0.2.2", port=80, pool="q"),
        VirtualServer(partition="A", name="ok", address="192.0.2.3", port=80, pool="/Common/cp")]
    for obj in older:
        with old.transaction() as txn:
            write_object(txn, obj, None, None)
    Replica(new).apply_commits(SCOPE, list(sent))
    yield old, new
    old.close()
    new.close()


def test_a_replicated_use_of_another_partition_is_reported(replicated):
    _, new = replicated
    found = sorted((v.kind, v.partition, v.name, v.rule, v.other, v.served) for v in violations(new))
    assert found == [("pools", "A", "q", "cross-partition", "/B/m", True),
                     ("virtuals", "A", "v", "cross-partition", "/B/p", False)]
    assert all("another partition" in v.view().message for v in violations(new, ["A"]))
    assert violations(new, ["B"]) == []


def test_what_breaks_the_rule_is_not_served_and_a_foreign_monitor_not_used(replicated):
    _, new = replicated
    desired = desired_of(new)
    assert sorted(v["name"] for v in desired.virtuals) == ["ok", "w"]
    assert sorted((p["partition"], p["name"]) for p in desired.pools) == [("A", "q"), ("Common", "cp")]
    assert desired.monitors == []  # q is served without health monitoring


def test_a_use_that_breaks_the_rule_holds_nothing(replicated):
    _, new = replicated
    config = ConfigService(new)
    config.delete(Pool, {"partition": "B", "name": "p"})
    config.delete(Monitor, {"partition": "B", "name": "m"})
    assert config.read(VirtualServer, {"partition": "A", "name": "v"})["pool"] == "/B/p"  # still reported
    assert {(v.name, v.rule) for v in violations(new)} == {("q", "cross-partition"), ("v", "cross-partition")}


def test_the_rule_holds_for_every_writer_and_every_partition(replicated):
    old, _ = replicated
    config = ConfigService(old)
    with pytest.raises(Invalid) as refused:
        config.update(VirtualServer, {"partition": "A", "name": "ok"}, {"pool": "/B/p"})
    assert refused.value.target == "pool" and "may use only objects of A and Common" in refused.value.message
    with pytest.raises(Invalid) as refused:
        config.create(Pool(name="uses-a", monitor="/A/nothing"))  # Common uses Common only
    assert refused.value.target == "monitor" and "does not exist" not in refused.value.message
