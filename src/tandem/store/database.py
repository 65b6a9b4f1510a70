"""SQLite store: objects, the commit log and the version vector, written in transactions.

Every change is a commit with this device's next sequence number and a hybrid-logical-clock
timestamp, applied to the object table and appended to the log in the same SQLite transaction.
The database runs in WAL mode with `synchronous=NORMAL`: a transaction is in the WAL when
COMMIT returns, so an acknowledged write survives the process being killed at any moment
(`synchronous=FULL`, `durable=True`, also survives a power cut, at a cost per write).
"""

import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from tandem.store.clock import HybridClock

GLOBAL = ""
"""The partition value of objects that belong to no partition (partitions, users)."""


@dataclass(frozen=True, slots=True)
class Record:
    """One live object as stored."""

    kind: str
    partition: str
    name: str
    body: dict[str, Any]
    commit_id: int


class Transaction:
    """Reads and writes inside one SQLite transaction; all of it commits or none does."""

    def __init__(self, store: "Store") -> None:
        self._store = store
        self._db = store.db
        self.txn_id: int | None = None
        self.commit_ids: list[int] = []

    def get(self, kind: str, partition: str, name: str) -> dict[str, Any] | None:
        return self._store.get(kind, partition, name)

    def exists(self, kind: str, partition: str, name: str) -> bool:
        return self._store.exists(kind, partition, name)

    def records(self, kind: str, partition: str | None = None, prefix: str | None = None) -> Iterator[Record]:
        return self._store.records(kind, partition=partition, prefix=prefix)

    def referencing(self, kind: str, field: str, value: Any, partition: str | None = None) -> list[tuple[str, str]]:
        return self._store.referencing(kind, field, value, partition)

    def put(self, kind: str, partition: str, name: str, body: dict[str, Any]) -> int:
        """Create or replace an object; returns its commit id."""
        return self._commit(kind, partition, name, "put", body)

    def delete(self, kind: str, partition: str, name: str) -> int:
        """Delete an object (leaving a tombstone); returns the commit id."""
        return self._commit(kind, partition, name, "delete", None)

    def _commit(self, kind: str, partition: str, name: str, op: str, body: dict[str, Any] | None) -> int:
        store = self._store
        seq = store.next_seq()
        hlc = store.clock.now()
        text = orjson.dumps(body).decode() if body is not None else None
        cursor = self._db.execute(
            "INSERT INTO commits (txn, origin, seq, hlc, kind, partition, name, op, body)"
            " VALUES (coalesce(?, (SELECT coalesce(max(id), 0) + 1 FROM commits)), ?, ?, ?, ?, ?, ?, ?, ?)",
            (self.txn_id, store.device_id, seq, hlc, kind, partition, name, op, text),
        )
        commit_id = cursor.lastrowid
        assert commit_id is not None
        if self.txn_id is None:
            self.txn_id = commit_id
        self._db.execute(
            "INSERT OR REPLACE INTO objects (kind, partition, name, body, hlc, origin, seq, commit_id, deleted)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (kind, partition, name, text, hlc, store.device_id, seq, commit_id, int(body is None)),
        )
        self._db.execute("INSERT OR REPLACE INTO versions (origin, seq) VALUES (?, ?)", (store.device_id, seq))
        self.commit_ids.append(commit_id)
        return commit_id


class Store:
    """The single source of truth of one device."""

    def __init__(self, path: Path, *, durable: bool = False) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.executescript(resources.files("tandem.store").joinpath("schema.sql").read_text())
        self.device_id = self.meta("device_id") or self._set_meta_once("device_id", str(uuid.uuid4()))
        row = self.db.execute("SELECT coalesce(max(hlc), 0) FROM commits").fetchone()
        self.clock = HybridClock(row[0])
        self._in_transaction = False

    def close(self) -> None:
        self.db.close()

    # -- metadata -------------------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def _set_meta_once(self, key: str, value: str) -> str:
        self.set_meta(key, value)
        return value

    # -- transactions ---------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """One atomic unit of work: commits on leaving the block, rolls back on an exception."""
        if self._in_transaction:
            raise RuntimeError("transactions do not nest")
        self._in_transaction = True
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield Transaction(self)
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        else:
            self.db.execute("COMMIT")
        finally:
            self._in_transaction = False

    def next_seq(self) -> int:
        row = self.db.execute("SELECT seq FROM versions WHERE origin = ?", (self.device_id,)).fetchone()
        return (row[0] if row else 0) + 1

    # -- reads ----------------------------------------------------------------------------------

    def get(self, kind: str, partition: str, name: str) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT body FROM objects WHERE kind = ? AND partition = ? AND name = ? AND deleted = 0",
            (kind, partition, name),
        ).fetchone()
        return orjson.loads(row[0]) if row else None

    def exists(self, kind: str, partition: str, name: str) -> bool:
        return self.db.execute(
            "SELECT 1 FROM objects WHERE kind = ? AND partition = ? AND name = ? AND deleted = 0",
            (kind, partition, name),
        ).fetchone() is not None

    def records(self, kind: str, *, partition: str | None = None, prefix: str | None = None,
                after: tuple[str, str] | None = None) -> Iterator[Record]:
        """Live objects of a kind in (partition, name) order, optionally within one partition,
        with names starting with `prefix`, and strictly after the key `after`."""
        sql = "SELECT partition, name, body, commit_id FROM objects WHERE kind = ? AND deleted = 0"
        args: list[Any] = [kind]
        if partition is not None:
            sql += " AND partition = ?"
            args.append(partition)
        if prefix:
            sql += " AND name >= ? AND name < ?"
            args += [prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)]
        if after is not None:
            sql += " AND (partition, name) > (?, ?)"
            args += list(after)
        sql += " ORDER BY partition, name"
        for part, name, body, commit_id in self.db.execute(sql, args):
            yield Record(kind, part, name, orjson.loads(body), commit_id)

    def referencing(self, kind: str, field: str, value: Any, partition: str | None = None) -> list[tuple[str, str]]:
        """Keys (partition, name) of live objects of `kind` whose top-level `field` equals `value`."""
        sql = ("SELECT partition, name FROM objects WHERE kind = ? AND deleted = 0"
               " AND json_extract(body, ?) = ?")
        args: list[Any] = [kind, f"$.{field}", value]
        if partition is not None:
            sql += " AND partition = ?"
            args.append(partition)
        return self.db.execute(sql, args).fetchall()

    def last_commit_id(self) -> int:
        return self.db.execute("SELECT coalesce(max(id), 0) FROM commits").fetchone()[0]

    def commits_after(self, commit_id: int, limit: int = 1000) -> list[dict[str, Any]]:
        """Log entries after `commit_id`, oldest first."""
        rows = self.db.execute(
            "SELECT id, txn, origin, seq, hlc, kind, partition, name, op, body FROM commits"
            " WHERE id > ? ORDER BY id LIMIT ?", (commit_id, limit)).fetchall()
        keys = ("id", "txn", "origin", "seq", "hlc", "kind", "partition", "name", "op", "body")
        return [dict(zip(keys, row[:-1], strict=False)) | {"body": orjson.loads(row[-1]) if row[-1] else None}
                for row in rows]

    # -- tokens (local to this device, never replicated) -----------------------------------------

    def add_token(self, token_hash: str, username: str, expires_at: float) -> None:
        self.db.execute("INSERT INTO tokens (hash, username, expires_at) VALUES (?, ?, ?)",
                        (token_hash, username, expires_at))

    def token(self, token_hash: str) -> tuple[str, float] | None:
        row = self.db.execute("SELECT username, expires_at FROM tokens WHERE hash = ?", (token_hash,)).fetchone()
        return (row[0], row[1]) if row else None

    def remove_tokens(self, *, token_hash: str | None = None, username: str | None = None,
                      expired_before: float | None = None) -> None:
        if token_hash is not None:
            self.db.execute("DELETE FROM tokens WHERE hash = ?", (token_hash,))
        if username is not None:
            self.db.execute("DELETE FROM tokens WHERE username = ?", (username,))
        if expired_before is not None:
            self.db.execute("DELETE FROM tokens WHERE expires_at < ?", (expired_before,))
