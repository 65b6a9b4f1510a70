"""The store: transactions, the commit log, the version vector and the clock."""

import pytest

from tandem.store import GLOBAL, Store
from tandem.store.clock import COUNTER_BITS, HybridClock


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "t.db")
    yield store
    store.close()


def test_a_transaction_commits_all_or_nothing(store):
    with store.transaction() as txn:
        txn.put("pools", "Common", "a", {"name": "a"})
        txn.put("pools", "Common", "b", {"name": "b"})
    with pytest.raises(ValueError), store.transaction() as txn:
        txn.put("pools", "Common", "c", {"name": "c"})
        txn.delete("pools", "Common", "a")
        raise ValueError("refused half-way")
    assert [r.name for r in store.records("pools")] == ["a", "b"]
    assert store.last_commit_id() == 2


def test_commits_carry_origin_sequence_clock_and_transaction(store):
    with store.transaction() as txn:
        txn.put("pools", "Common", "a", {"name": "a"})
        txn.put("members", "Common", "a/10.0.0.1:80", {"address": "10.0.0.1"})
    with store.transaction() as txn:
        txn.delete("pools", "Common", "a")
    log = store.origin_commits("", store.device_id, 0, 100)
    assert [c["id"] for c in log] == [1, 2, 3]
    assert [c["txn"] for c in log] == [1, 1, 3]
    assert {c["origin"] for c in log} == {store.device_id}
    assert [c["seq"] for c in log] == [1, 2, 3]
    assert log[0]["hlc"] < log[1]["hlc"] < log[2]["hlc"]
    assert log[2]["op"] == "delete" and log[2]["body"] is None
    assert store.get("pools", "Common", "a") is None and not store.exists("pools", "Common", "a")
    assert store.vector("") == {store.device_id: 3}


def test_records_prefix_after_and_references(store):
    store.index_of = lambda kind, partition, body: [("pool", f"/{partition}/{body['pool']}")] if "pool" in body else []
    with store.transaction() as txn:
        for name in ("web/10.0.0.1:80", "web/10.0.0.2:80", "web2/10.0.0.1:80", "wex/1"):
            txn.put("members", "Common", name, {"n": name})
        txn.put("virtuals", "Common", "v", {"pool": "web", "port": 80})
        txn.put("partitions", GLOBAL, "Common", {"name": "Common"})
    assert [r.name for r in store.records("members", partition="Common", prefix="web/")] == [
        "web/10.0.0.1:80", "web/10.0.0.2:80"]
    assert [r.name for r in store.records("members", after=("Common", "web/10.0.0.2:80"))] == [
        "web2/10.0.0.1:80", "wex/1"]
    assert store.referrers("pool", "/Common/web") == [("virtuals", "Common", "v")]
    assert store.referrers("pool", "/Common/web2") == []
    with store.transaction() as txn:
        txn.put("virtuals", "Common", "v", {"pool": "web2", "port": 80})
    assert store.referrers("pool", "/Common/web") == [] and store.referrers("pool", "/Common/web2") != []
    with store.transaction() as txn:
        txn.delete("virtuals", "Common", "v")
    assert store.referrers("pool", "/Common/web2") == []  # tombstones refer to nothing


def test_the_device_id_and_clock_survive_reopening(tmp_path):
    store = Store(tmp_path / "t.db")
    device_id = store.device_id
    with store.transaction() as txn:
        txn.put("pools", "Common", "a", {})
    last = store.clock.last
    store.close()
    reopened = Store(tmp_path / "t.db")
    assert reopened.device_id == device_id
    assert reopened.clock.now() > last


def test_the_clock_never_goes_backwards_and_follows_remote_clocks():
    clock = HybridClock()
    stamps = [clock.now() for _ in range(1000)]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    future = stamps[-1] + (10_000 << COUNTER_BITS)
    clock.observe(future)
    assert clock.now() > future
