"""The store on a disk that refuses a COMMIT: the transaction is rolled back whole, answered as
`InsufficientStorage`, and the next one gets the next sequence number (no gap, nothing half kept)."""

import sqlite3

import pytest

from tandem.errors import InsufficientStorage
from tandem.store import ScopeRule, Store


class RefusingCommit:
    """The writer's connection, but COMMIT fails as on a full disk and leaves the transaction open (as SQLite
    may: it is then up to the caller to roll back)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
        if sql == "COMMIT":
            error = sqlite3.OperationalError("database or disk is full")
            error.sqlite_errorcode = 13  # SQLITE_FULL
            raise error
        return self._db.execute(sql, *args)

    def __getattr__(self, name: str) -> object:
        return getattr(self._db, name)


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "t.db")
    store.scope_of = lambda kind, partition, name: ScopeRule("g")  # sequenced: each transaction gets the next number
    yield store
    store.close()


def test_a_refused_commit_rolls_back_and_leaves_no_gap(store):
    with store.transaction() as txn:
        txn.put("pools", "Common", "a", {"name": "a"})
    real = store._writer_db
    store._writer_db = RefusingCommit(real)
    with pytest.raises(InsufficientStorage) as refused, store.transaction() as txn:
        txn.put("pools", "Common", "lost", {"name": "lost"})
    store._writer_db = real
    assert refused.value.status == 507 and "nothing was changed" in refused.value.message
    assert not real.in_transaction
    assert store.vector("g") == {store.device_id: 1}
    with store.transaction() as txn:
        txn.put("pools", "Common", "b", {"name": "b"})
    assert [r.name for r in store.records("pools")] == ["a", "b"]
    assert [r.seq for r in store.origin_commits("g", store.device_id, 0, 100)] == [1, 2]
    assert store.vector("g") == {store.device_id: 2}
