"""Replication between two stores without a network: resolution, conflicts, gaps, snapshots."""

import dataclasses

import pytest

from tandem.store import ScopeRule, Store
from tandem.sync.conflicts import CONFLICTS
from tandem.sync.replica import Replica

SCOPE = "dg"


def make_store(tmp_path, name, sequenced=True):
    store = Store(tmp_path / f"{name}.db")
    store.scope_of = lambda kind, partition, obj: ScopeRule(SCOPE, sequenced)
    sent = []
    store.on_commit.append(sent.extend)
    return store, Replica(store), sent


@pytest.fixture
def pair(tmp_path):
    return make_store(tmp_path, "a"), make_store(tmp_path, "b")


def write(store, name, body):
    with store.transaction() as txn:
        txn.put("pools", "Common", name, {"partition": "Common", "name": name} | body)


def body_of(store, name):
    body = store.get("pools", "Common", name)
    return body and {k: v for k, v in body.items() if k not in ("partition", "name")}


def conflict_records(store):
    return [r.body for r in store.records(CONFLICTS, partition="Common")]


def test_commits_apply_in_order_and_gaps_are_reported(pair):
    (a, _, sent_a), (b, rb, _) = pair
    for i in range(3):
        write(a, f"p{i}", {"i": i})
    applied, gaps = rb.apply_commits(SCOPE, [sent_a[0], sent_a[2]])
    assert applied == 1 and gaps == {a.device_id: 1}
    applied, gaps = rb.apply_commits(SCOPE, sent_a)
    assert applied == 2 and not gaps
    assert b.vector(SCOPE) == {a.device_id: 3}
    assert [r.name for r in b.records("pools")] == ["p0", "p1", "p2"]
    assert rb.apply_commits(SCOPE, sent_a) == (0, {})  # duplicates change nothing


def test_concurrent_writes_resolve_the_same_way_and_are_reported_on_both(pair):
    (a, ra, sent_a), (b, rb, sent_b) = pair
    write(a, "web", {"from": "a"})
    write(b, "web", {"from": "b"})
    rb.apply_commits(SCOPE, sent_a)
    ra.apply_commits(SCOPE, sent_b)
    assert a.get("pools", "Common", "web") == b.get("pools", "Common", "web")
    for store in (a, b):
        (conflict,) = conflict_records(store)
        assert {conflict["winner"]["origin"], conflict["loser"]["origin"]} == {a.device_id, b.device_id}
        assert {conflict["winner"]["value"]["from"], conflict["loser"]["value"]["from"]} == {"a", "b"}
    assert conflict_records(a)[0]["winner"] == conflict_records(b)[0]["winner"]


def test_a_write_that_saw_the_other_is_no_conflict(pair):
    (a, ra, sent_a), (b, rb, sent_b) = pair
    write(a, "web", {"v": 1})
    rb.apply_commits(SCOPE, sent_a)
    write(b, "web", {"v": 2})  # b saw a's version
    ra.apply_commits(SCOPE, sent_b)
    assert body_of(a, "web") == {"v": 2}
    assert conflict_records(a) == [] and conflict_records(b) == []
    stale = dataclasses.replace(sent_a[0], seq=1)
    assert rb.apply_commits(SCOPE, [stale]) == (0, {})
    assert body_of(b, "web") == {"v": 2}


def test_deletes_are_tombstones_that_replicate(pair):
    (a, _, sent_a), (b, rb, _) = pair
    write(a, "web", {"v": 1})
    with a.transaction() as txn:
        txn.delete("pools", "Common", "web")
    rb.apply_commits(SCOPE, sent_a)
    assert b.get("pools", "Common", "web") is None
    assert b.version("pools", "Common", "web").deleted


def test_a_log_that_no_longer_holds_the_commits_asks_for_a_full_load(pair):
    (a, ra, _), (b, rb, _) = pair
    for i in range(30):
        write(a, f"p{i}", {"i": i})
    assert len(ra.commits_for(SCOPE, {})) == 30
    a.trim_log(10)
    assert ra.commits_for(SCOPE, {}) is None
    assert len(ra.commits_for(SCOPE, {a.device_id: 25})) == 5
    rb.apply_snapshot(SCOPE, ["Common"], ra.versions(["Common"]), dict(a.vector(SCOPE)), replace=False)
    assert len(list(b.records("pools"))) == 30 and b.vector(SCOPE) == a.vector(SCOPE)
    assert a.digest(["Common"]) == b.digest(["Common"])


def test_a_replacing_snapshot_makes_the_scope_exactly_the_senders(tmp_path):
    a, ra, _ = make_store(tmp_path, "a")
    b, rb, _ = make_store(tmp_path, "b", sequenced=False)
    write(a, "shared", {"from": "a"})
    write(b, "shared", {"from": "b"})
    write(b, "only-b", {"from": "b"})
    assert b.pending_count(SCOPE) == 2
    rb.apply_snapshot(SCOPE, ["Common"], ra.versions(["Common"]), dict(a.vector(SCOPE)), replace=True)
    assert [r.name for r in b.records("pools")] == ["shared"]
    assert body_of(b, "shared") == {"from": "a"}
    assert b.pending_count(SCOPE) == 0
    assert a.digest(["Common"]) == b.digest(["Common"])


def test_pending_changes_get_sequence_numbers_when_synced(tmp_path):
    b, rb, sent = make_store(tmp_path, "b", sequenced=False)
    write(b, "x", {})
    write(b, "y", {})
    assert sent == [] and b.vector(SCOPE) == {}
    pending = rb.sequence_pending(SCOPE)
    assert [c.seq for c in pending] == [1, 2] and b.vector(SCOPE) == {b.device_id: 2}
    assert b.version("pools", "Common", "y").seq == 2
    assert [c.seq for c in rb.commits_for(SCOPE, {})] == [1, 2]


def test_an_object_changed_twice_in_one_transaction_replicates_its_last_change(pair):
    (a, _, sent_a), (b, rb, _) = pair
    with a.transaction() as txn:
        txn.put("pools", "Common", "web", {"partition": "Common", "name": "web", "v": 1})
        txn.put("pools", "Common", "web", {"partition": "Common", "name": "web", "v": 2})
    (record,) = sent_a
    assert len(record.changes) == 1
    rb.apply_commits(SCOPE, sent_a)
    assert body_of(b, "web") == {"v": 2} and a.digest(["Common"]) == b.digest(["Common"])
