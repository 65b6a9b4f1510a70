"""The store: transactions, the log, the version vector, the digests, the writer thread and the clock."""

import asyncio
import sqlite3
import threading
import time

import pytest

from tandem.store import GLOBAL, Store
from tandem.store.clock import COUNTER_BITS, HybridClock
from tandem.store.database import MIGRATIONS, SCHEMA_VERSION, NewerStore
from tandem.store.draft import BlockClock, Draft, StaleDraft, commit
from tandem.store.reader import Reader


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
    assert store.last_commit_id() == 1  # one log record per transaction (and scope)


def test_a_transaction_is_one_log_record_with_its_changes(store):
    with store.transaction() as txn:
        txn.put("pools", "Common", "a", {"name": "a"})
        txn.put("members", "Common", "a/10.0.0.1:80", {"address": "10.0.0.1"})
    with store.transaction() as txn:
        txn.delete("pools", "Common", "a")
    log = store.origin_commits("", store.device_id, 0, 100)
    assert [(r.id, r.seq, r.origin) for r in log] == [(1, 1, store.device_id), (2, 2, store.device_id)]
    assert [[change[:3] for change in r.changes] for r in log] == [
        [["pools", "Common", "a"], ["members", "Common", "a/10.0.0.1:80"]], [["pools", "Common", "a"]]]
    first, second, third = (change[3] for r in log for change in r.changes)
    assert first < second < third
    assert log[1].changes[0][4] is None  # a delete
    assert store.get("pools", "Common", "a") is None and not store.exists("pools", "Common", "a")
    assert store.vector("") == {store.device_id: 2}
    assert store.version("members", "Common", "a/10.0.0.1:80").seq == 1


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


def test_a_store_of_the_release_before_keeps_its_failover_events_and_records_their_kind(tmp_path):
    store = Store(tmp_path / "t.db")
    store.add_event("tg", "standby", "active", "first").result()
    store.close()
    with sqlite3.connect(tmp_path / "t.db") as db:  # as the release before made the table: no kind column
        db.execute("ALTER TABLE events DROP COLUMN kind")
        db.execute("PRAGMA user_version = 1")
    reopened = Store(tmp_path / "t.db")
    reopened.add_event("", "up", "down", "dev-2's heartbeats on path 1 ...", kind="path").result()
    assert [(e.traffic_group, e.reason, e.kind) for e in reopened.events(10)] == [
        ("tg", "first", "transition"), ("", "dev-2's heartbeats on path 1 ...", "path")]
    reopened.close()


def test_a_store_of_a_later_layout_is_refused_and_left_as_it_is(tmp_path):
    Store(tmp_path / "t.db").close()
    with sqlite3.connect(tmp_path / "t.db") as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(NewerStore, match=rf"later release of Tandem \(store layout {SCHEMA_VERSION + 1}; this"):
        Store(tmp_path / "t.db")
    with sqlite3.connect(tmp_path / "t.db") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
    assert len(MIGRATIONS) == SCHEMA_VERSION  # a step to each layout


def test_the_clock_never_goes_backwards_and_follows_remote_clocks():
    clock = HybridClock()
    stamps = [clock.now() for _ in range(1000)]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    future = stamps[-1] + (10_000 << COUNTER_BITS)
    clock.observe(future)
    assert clock.now() > future


def _write_pools(store, names, description=""):
    with store.transaction() as txn:
        for name in names:
            txn.put("pools", "Common", name, {"name": name, "description": description})


def test_the_writer_thread_writes_while_other_threads_read(tmp_path):
    store = Store(tmp_path / "t.db")
    heard: list[str] = []
    store.on_keys.append(lambda keys: heard.append(threading.current_thread().name))

    async def scenario():
        store.start(asyncio.get_running_loop())
        await store.write(_write_pools, store, ["a"])
        with pytest.raises(RuntimeError, match="writer thread"), store.transaction():
            pass

        def slow_write():
            with store.transaction() as txn:
                txn.put("pools", "Common", "b", {"name": "b"})
                time.sleep(0.5)  # a long transaction holds the writer, not the readers

        writing = asyncio.ensure_future(store.write(slow_write))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        assert [r.name for r in store.records("pools")] == ["a"]  # read on this thread: not blocked, not dirty
        assert time.monotonic() - started < 0.2
        await writing
        assert [r.name for r in store.records("pools")] == ["a", "b"]
        await asyncio.sleep(0)  # listeners run on the loop
        assert heard and all(name == threading.current_thread().name for name in heard)
        store.set_meta("k", "v")
        await store.flush()

    asyncio.run(scenario())
    store.close()
    reopened = Store(tmp_path / "t.db")
    assert reopened.meta("k") == "v" and reopened.vector("") == {reopened.device_id: 2}
    reopened.close()


def test_digests_kept_up_to_date_equal_digests_computed_anew(tmp_path):
    store = Store(tmp_path / "t.db")
    _write_pools(store, [f"p{i}" for i in range(50)])
    _write_pools(store, [f"p{i}" for i in range(0, 50, 3)], "changed")
    with store.transaction() as txn:
        for i in range(0, 50, 7):
            txn.delete("pools", "Common", f"p{i}")
        txn.put("partitions", GLOBAL, "Common", {"name": "Common"})
    with store.atomic():
        store.remove_version("pools", "Common", "p1")
    kept = store.digest(["Common"])
    store.close()
    computed = Store(tmp_path / "t.db")
    assert computed.digest(["Common"]) == kept and any(kept)
    computed.close()


def _index(kind, partition, body):
    return [("monitor", body["monitor"])] if body.get("monitor") else []


def _draft(store: Store, reader: Reader) -> Draft:
    """A draft as a batch's worker process makes it: a reader of its own, stamps reserved on the device's clock."""
    return Draft(reader, BlockClock(store.clock.reserve(10), 10), store.device_id, store.generation)


def test_a_draft_commits_in_bulk_unless_what_it_read_changed(tmp_path):
    store = Store(tmp_path / "t.db")
    store.index_of = _index
    reader = Reader.open(tmp_path / "t.db", _index)
    _write_pools(store, ["seen", "other"])
    fresh = _draft(store, reader)
    assert fresh.get("pools", "Common", "seen") is not None
    fresh.put("pools", "Common", "new", {"name": "new", "monitor": "m"})
    fresh.delete("pools", "Common", "seen")
    assert fresh.referrers("monitor", "m") == [("pools", "Common", "new")]
    assert [r.name for r in fresh.records("pools")] == ["new", "other"]
    prepared = fresh.close()
    with store.transaction() as txn:  # nothing the draft read: it stays good
        txn.put("monitors", "Common", "m", {"name": "m"})
    record_id = commit(store, prepared)
    assert record_id == store.last_commit_id()
    assert [r.name for r in store.records("pools")] == ["new", "other"]
    assert store.referrers("monitor", "m") == [("pools", "Common", "new")]
    digest_now = store.digest(["Common"])

    stale = _draft(store, reader)
    stale.get("pools", "Common", "new")
    stale.put("pools", "Common", "x", {"name": "x"})
    prepared = stale.close()
    _write_pools(store, ["new"], "changed meanwhile")
    with pytest.raises(StaleDraft, match="pools /Common/new changed"):
        commit(store, prepared)
    assert not store.exists("pools", "Common", "x") and store.digest(["Common"]) != digest_now
    store.close()


def test_a_log_of_the_earlier_format_becomes_records_of_one_change(tmp_path):
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE commits (id INTEGER PRIMARY KEY, txn INTEGER NOT NULL, scope TEXT NOT NULL, origin TEXT NOT NULL,
            seq INTEGER, hlc INTEGER NOT NULL, vv TEXT NOT NULL, kind TEXT NOT NULL, partition TEXT NOT NULL,
            name TEXT NOT NULL, op TEXT NOT NULL, body TEXT);
        INSERT INTO commits VALUES (1, 1, 'dg', 'dev-a', 1, 100, '{"dev-a": 1}', 'pools', 'Common', 'p', 'put',
                                    '{"name": "p"}');
        INSERT INTO commits VALUES (2, 2, 'dg', 'dev-a', 2, 101, '{"dev-a": 2}', 'pools', 'Common', 'p', 'delete',
                                    NULL);
    """)
    db.commit()
    db.close()
    store = Store(path)
    log = store.origin_commits("dg", "dev-a", 0, 100)
    assert [(r.seq, r.changes) for r in log] == [(1, [["pools", "Common", "p", 100, {"name": "p"}]]),
                                                       (2, [["pools", "Common", "p", 101, None]])]
    store.close()


def test_a_draft_older_than_what_it_read_or_than_a_snapshot_applied_is_stale(tmp_path):
    store = Store(tmp_path / "t.db")
    reader = Reader.open(tmp_path / "t.db", _index)
    early = BlockClock(store.clock.reserve(10), 10)  # stamps reserved, then a write before the snapshot
    _write_pools(store, ["web"], "written after the reservation")
    late = Draft(reader, early, store.device_id, store.generation)
    late.put("pools", "Common", "web", {"name": "web", "description": "the draft's"})
    with pytest.raises(StaleDraft, match="stamped after"):
        commit(store, late.close())

    before_snapshot = _draft(store, reader)
    before_snapshot.put("pools", "Common", "other", {"name": "other"})
    with store.atomic():  # a merging snapshot applied meanwhile: no log record says what it changed
        store.note_unlogged()
    with pytest.raises(StaleDraft, match="snapshot applied"):
        commit(store, before_snapshot.close())
    store.close()
