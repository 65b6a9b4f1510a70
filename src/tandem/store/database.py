"""SQLite store: objects, the commit log and version vectors, written in transactions.

Every change is a commit applied to the object table and appended to the log in the same SQLite
transaction. A commit belongs to a replication scope (a device group, or '' for this device only,
as the `scope_of` rule says), carries this device's next sequence number in that scope (none while
the scope does not send changes: a pending change), a hybrid-logical-clock stamp, and the version
vector of the scope when it was written.

The database runs in WAL mode with `synchronous=NORMAL`: a transaction is in the WAL when COMMIT
returns, so an acknowledged write survives the process being killed at any moment
(`synchronous=FULL`, `durable=True`, also survives a power cut, at a cost per write).
"""

import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from tandem.store.clock import HybridClock, Stamp

GLOBAL = ""
"""The partition value of objects that belong to no partition (partitions, users)."""
LOCAL_SCOPE = ""
"""The scope of changes that stay on this device."""

Vector = dict[str, int]


@dataclass(frozen=True, slots=True)
class ScopeRule:
    """Where a change to an object replicates, and whether it is sent (sequenced) at once."""

    scope: str = LOCAL_SCOPE
    sequenced: bool = True


ScopeOf = Callable[[str, str, str], ScopeRule]
"""(kind, partition, name) -> the rule for changes to that object."""
IndexOf = Callable[[str, str, dict[str, Any]], list[tuple[str, str]]]
"""(kind, partition, body) -> the (field, value) references of that object to keep an index of."""


@dataclass(frozen=True, slots=True)
class Record:
    """One live object as stored."""

    kind: str
    partition: str
    name: str
    body: dict[str, Any]
    commit_id: int
    stamp: Stamp


_COMMIT_COLUMNS = ("id", "txn", "scope", "origin", "seq", "hlc", "vv", "kind", "partition", "name", "op", "body")
_VERSION_COLUMNS = ("kind", "partition", "name", "body", "hlc", "origin", "seq", "vv", "deleted")


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _commit_dict(row: tuple) -> dict[str, Any]:
    commit = dict(zip(_COMMIT_COLUMNS, row, strict=True))
    commit["vv"] = orjson.loads(commit["vv"])
    commit["body"] = orjson.loads(commit["body"]) if commit["body"] is not None else None
    return commit


def _version_dict(row: tuple) -> dict[str, Any]:
    version = dict(zip(_VERSION_COLUMNS, row, strict=True))
    version["vv"] = orjson.loads(version["vv"])
    version["body"] = orjson.loads(version["body"]) if version["body"] is not None else None
    version["deleted"] = bool(version["deleted"])
    return version


class Transaction:
    """Reads and writes inside one SQLite transaction; all of it commits or none does."""

    def __init__(self, store: "Store") -> None:
        self._store = store
        self.txn_id: int | None = None
        self.commits: list[dict[str, Any]] = []

    def get(self, kind: str, partition: str, name: str) -> dict[str, Any] | None:
        return self._store.get(kind, partition, name)

    def record(self, kind: str, partition: str, name: str) -> Record | None:
        return self._store.record(kind, partition, name)

    def exists(self, kind: str, partition: str, name: str) -> bool:
        return self._store.exists(kind, partition, name)

    def records(self, kind: str, partition: str | None = None, prefix: str | None = None) -> Iterator[Record]:
        return self._store.records(kind, partition=partition, prefix=prefix)

    def referrers(self, field: str, value: str) -> list[tuple[str, str, str]]:
        return self._store.referrers(field, value)

    def stamp(self) -> Stamp:
        """A fresh stamp of this device, for a `put` that must know its own stamp in advance."""
        return Stamp(self._store.clock.now(), self._store.device_id)

    def put(self, kind: str, partition: str, name: str, body: dict[str, Any], stamp: Stamp | None = None) -> int:
        """Create or replace an object (at `stamp`, from `stamp()`, if given); returns its commit id."""
        return self._commit(kind, partition, name, "put", body, stamp)

    def delete(self, kind: str, partition: str, name: str) -> int:
        """Delete an object (leaving a tombstone); returns the commit id."""
        return self._commit(kind, partition, name, "delete", None)

    def _commit(self, kind: str, partition: str, name: str, op: str, body: dict[str, Any] | None,
                stamp: Stamp | None = None) -> int:
        store = self._store
        rule = store.scope_of(kind, partition, name)
        vector = store.vector(rule.scope)
        seq = vector.get(store.device_id, 0) + 1 if rule.sequenced else None
        if seq is not None:
            vector[store.device_id] = seq
        commit = {"txn": self.txn_id, "scope": rule.scope, "origin": store.device_id, "seq": seq,
                  "hlc": stamp.hlc if stamp else store.clock.now(), "vv": dict(vector), "kind": kind,
                  "partition": partition, "name": name, "op": op, "body": body}
        commit_id = store.append(commit)
        if self.txn_id is None:
            self.txn_id = commit_id
        store.write_version(commit, commit_id)
        if seq is not None:
            store.set_version(rule.scope, store.device_id, seq)
        self.commits.append(commit)
        return commit_id


class Store:
    """The single source of truth of one device."""

    def __init__(self, path: Path, *, durable: bool = False) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        self.db.executescript(resources.files("tandem.store").joinpath("schema.sql").read_text())
        self.device_id = self.meta("device_id") or self._set_meta_once("device_id", str(uuid.uuid4()))
        row = self.db.execute("SELECT coalesce(max(hlc), 0) FROM commits").fetchone()
        self.clock = HybridClock(row[0])
        self.scope_of: ScopeOf = lambda kind, partition, name: ScopeRule()
        self.index_of: IndexOf = lambda kind, partition, body: []
        self.on_commit: list[Callable[[list[dict[str, Any]]], None]] = []
        """Called after each committed local transaction with its commits."""
        self.on_change: list[Callable[[], None]] = []
        """Called after every committed transaction, local or replicated."""
        self.on_versions: list[Callable[[list[tuple[dict | None, dict | None]]], None]] = []
        """Called after every committed transaction with the (old, new) object versions it replaced."""
        self._version_changes: list[tuple[dict | None, dict | None]] = []
        self._vectors: dict[str, Vector] = {}
        for scope, origin, seq in self.db.execute("SELECT scope, origin, seq FROM versions"):
            self._vectors.setdefault(scope, {})[origin] = seq
        self._in_transaction = False

    def close(self) -> None:
        self.db.close()

    # -- metadata -------------------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str | None) -> None:
        if value is None:
            self.db.execute("DELETE FROM meta WHERE key = ?", (key,))
        else:
            self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def _set_meta_once(self, key: str, value: str) -> str:
        self.set_meta(key, value)
        return value

    # -- transactions ---------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """One atomic unit of local work: commits on leaving the block, rolls back on an exception."""
        with self.atomic():
            txn = Transaction(self)
            yield txn
        sequenced = [c for c in txn.commits if c["seq"] is not None and c["scope"] != LOCAL_SCOPE]
        if sequenced:
            for listener in self.on_commit:
                listener(sequenced)

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """A plain SQLite transaction (no notification): for replicated changes applied here."""
        if self._in_transaction:
            raise RuntimeError("transactions do not nest")
        self._in_transaction = True
        saved = {scope: dict(vector) for scope, vector in self._vectors.items()}
        self._version_changes = []
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            self._vectors = saved
            raise
        else:
            self.db.execute("COMMIT")
            changes, self._version_changes = self._version_changes, []
            for versions_listener in self.on_versions:
                versions_listener(changes)
            for listener in self.on_change:
                listener()
        finally:
            self._in_transaction = False

    def append(self, commit: dict[str, Any]) -> int:
        """Add a commit to the log; returns its id."""
        cursor = self.db.execute(
            "INSERT INTO commits (txn, scope, origin, seq, hlc, vv, kind, partition, name, op, body)"
            " VALUES (coalesce(?, (SELECT coalesce(max(id), 0) + 1 FROM commits)), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (commit.get("txn"), commit["scope"], commit["origin"], commit["seq"], commit["hlc"], _json(commit["vv"]),
             commit["kind"], commit["partition"], commit["name"], commit["op"], _json(commit["body"])))
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def write_version(self, version: dict[str, Any], commit_id: int) -> None:
        """Make `version` (a commit or a snapshot entry) the object's current version."""
        deleted = version.get("deleted", version.get("op") == "delete")
        if self.on_versions:
            self._version_changes.append((self.version(version["kind"], version["partition"], version["name"]),
                                          dict(version, deleted=deleted)))
        self.db.execute(
            "INSERT OR REPLACE INTO objects (kind, partition, name, body, hlc, origin, seq, vv, commit_id, deleted)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (version["kind"], version["partition"], version["name"], None if deleted else _json(version["body"]),
             version["hlc"], version["origin"], version["seq"], _json(version["vv"]), commit_id, int(deleted)))
        self.index(version["kind"], version["partition"], version["name"], None if deleted else version["body"])

    def index(self, kind: str, partition: str, name: str, body: dict[str, Any] | None) -> None:
        """Keep the references of one object (None: it is gone) in the index."""
        self.db.execute("DELETE FROM refs WHERE kind = ? AND partition = ? AND name = ?", (kind, partition, name))
        if body is not None:
            self.db.executemany(
                "INSERT OR IGNORE INTO refs (field, value, kind, partition, name) VALUES (?, ?, ?, ?, ?)",
                [(field, value, kind, partition, name) for field, value in self.index_of(kind, partition, body)])

    # -- version vectors ------------------------------------------------------------------------

    def vector(self, scope: str) -> Vector:
        """The version vector of a scope: per origin device, the highest sequence applied here."""
        return self._vectors.setdefault(scope, {})

    def set_version(self, scope: str, origin: str, seq: int) -> None:
        self.vector(scope)[origin] = seq
        self.db.execute("INSERT OR REPLACE INTO versions (scope, origin, seq) VALUES (?, ?, ?)", (scope, origin, seq))

    def drop_scope_versions(self, scope: str) -> None:
        self._vectors.pop(scope, None)
        self.db.execute("DELETE FROM versions WHERE scope = ?", (scope,))

    # -- reads ----------------------------------------------------------------------------------

    def get(self, kind: str, partition: str, name: str) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT body FROM objects WHERE kind = ? AND partition = ? AND name = ? AND deleted = 0",
            (kind, partition, name),
        ).fetchone()
        return orjson.loads(row[0]) if row else None

    def record(self, kind: str, partition: str, name: str) -> Record | None:
        """One live object with its stamp, or None."""
        row = self.db.execute(
            "SELECT body, commit_id, hlc, origin FROM objects WHERE kind = ? AND partition = ? AND name = ?"
            " AND deleted = 0", (kind, partition, name)).fetchone()
        return Record(kind, partition, name, orjson.loads(row[0]), row[1], Stamp(row[2], row[3])) if row else None

    def exists(self, kind: str, partition: str, name: str) -> bool:
        return self.db.execute(
            "SELECT 1 FROM objects WHERE kind = ? AND partition = ? AND name = ? AND deleted = 0",
            (kind, partition, name),
        ).fetchone() is not None

    def records(self, kind: str, *, partition: str | None = None, prefix: str | None = None,
                after: tuple[str, str] | None = None) -> Iterator[Record]:
        """Live objects of a kind in (partition, name) order, optionally within one partition,
        with names starting with `prefix`, and strictly after the key `after`."""
        sql = "SELECT partition, name, body, commit_id, hlc, origin FROM objects WHERE kind = ? AND deleted = 0"
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
        for part, name, body, commit_id, hlc, origin in self.db.execute(sql, args):
            yield Record(kind, part, name, orjson.loads(body), commit_id, Stamp(hlc, origin))

    def referrers(self, field: str, value: str) -> list[tuple[str, str, str]]:
        """The live objects (kind, partition, name) whose indexed `field` is `value` (see `index_of`)."""
        return self.db.execute("SELECT kind, partition, name FROM refs WHERE field = ? AND value = ?"
                               " ORDER BY kind, partition, name", (field, value)).fetchall()

    def reindex(self, kinds: Iterable[str]) -> None:
        """Build the reference index of every live object of `kinds` anew."""
        for kind in kinds:
            self.db.execute("DELETE FROM refs WHERE kind = ?", (kind,))
            for record in list(self.records(kind)):
                self.index(kind, record.partition, record.name, record.body)

    def last_commit_id(self) -> int:
        return self.db.execute("SELECT coalesce(max(id), 0) FROM commits").fetchone()[0]

    # -- replication ----------------------------------------------------------------------------

    def origin_commits(self, scope: str, origin: str, after: int, limit: int) -> list[dict[str, Any]] | None:
        """The commits of `origin` in `scope` with sequence after `after`, in order; None when the log
        no longer holds the next one (trimmed, or never received here: a full load is needed)."""
        rows = self.db.execute(
            f"SELECT {', '.join(_COMMIT_COLUMNS)} FROM commits WHERE scope = ? AND origin = ? AND seq > ?"
            " ORDER BY seq LIMIT ?", (scope, origin, after, limit)).fetchall()
        commits = [_commit_dict(row) for row in rows]
        if commits and commits[0]["seq"] != after + 1:
            return None
        if not commits and self.vector(scope).get(origin, 0) > after:
            return None
        return commits

    def version(self, kind: str, partition: str, name: str) -> dict[str, Any] | None:
        """The current version of an object, tombstones included."""
        row = self.db.execute(f"SELECT {', '.join(_VERSION_COLUMNS)} FROM objects"
                              " WHERE kind = ? AND partition = ? AND name = ?", (kind, partition, name)).fetchone()
        return _version_dict(row) if row else None

    def versions(self, kind: str, partition: str, prefix: str) -> list[dict[str, Any]]:
        """The live versions of one kind in a partition whose names start with `prefix`."""
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        rows = self.db.execute(f"SELECT {', '.join(_VERSION_COLUMNS)} FROM objects WHERE kind = ? AND partition = ?"
                               " AND name >= ? AND name < ? AND deleted = 0", (kind, partition, prefix, end))
        return [_version_dict(row) for row in rows]

    def scope_versions(self, partitions: Iterable[str]) -> Iterator[dict[str, Any]]:
        """Every object version (tombstones included) of the given partitions, partition objects included."""
        names = list(partitions)
        if not names:
            return
        marks = ", ".join("?" * len(names))
        yield from (_version_dict(row) for row in self.db.execute(
            f"SELECT {', '.join(_VERSION_COLUMNS)} FROM objects WHERE partition IN ({marks})"
            f" OR (kind = 'partitions' AND partition = '' AND name IN ({marks})) ORDER BY kind, partition, name",
            names + names))

    def kind_versions(self, kind: str) -> list[dict[str, Any]]:
        """Every version of one kind, tombstones included."""
        rows = self.db.execute(f"SELECT {', '.join(_VERSION_COLUMNS)} FROM objects WHERE kind = ?", (kind,))
        return [_version_dict(row) for row in rows]

    def rewrite_body(self, kind: str, partition: str, name: str, body: dict[str, Any]) -> None:
        """Change an object's stored body in place, its version unchanged (a format upgrade, not a change)."""
        self.db.execute("UPDATE objects SET body = ? WHERE kind = ? AND partition = ? AND name = ?",
                        (_json(body), kind, partition, name))

    def remove_version(self, kind: str, partition: str, name: str) -> None:
        """Forget an object entirely (a replacing full load)."""
        if self.on_versions:
            self._version_changes.append((self.version(kind, partition, name), None))
        self.db.execute("DELETE FROM objects WHERE kind = ? AND partition = ? AND name = ?", (kind, partition, name))
        self.index(kind, partition, name, None)

    def pending(self, scope: str) -> list[dict[str, Any]]:
        """Local commits of `scope` not yet sequenced (auto-sync off)."""
        rows = self.db.execute(f"SELECT {', '.join(_COMMIT_COLUMNS)} FROM commits WHERE scope = ? AND seq IS NULL"
                               " ORDER BY id", (scope,)).fetchall()
        return [_commit_dict(row) for row in rows]

    def pending_count(self, scope: str) -> int:
        return self.db.execute("SELECT count(*) FROM commits WHERE scope = ? AND seq IS NULL", (scope,)).fetchone()[0]

    def sequence(self, commit: dict[str, Any], seq: int) -> None:
        """Give a pending commit its sequence number (and its object version, if still current)."""
        commit["seq"] = seq
        commit["vv"] = dict(commit["vv"], **{commit["origin"]: seq})
        self.db.execute("UPDATE commits SET seq = ?, vv = ? WHERE id = ?", (seq, _json(commit["vv"]), commit["id"]))
        self.db.execute("UPDATE objects SET seq = ?, vv = ? WHERE kind = ? AND partition = ? AND name = ?"
                        " AND origin = ? AND hlc = ?", (seq, _json(commit["vv"]), commit["kind"], commit["partition"],
                                                          commit["name"], commit["origin"], commit["hlc"]))

    def drop_pending(self, scope: str) -> None:
        self.db.execute("DELETE FROM commits WHERE scope = ? AND seq IS NULL", (scope,))

    def trim_log(self, keep: int) -> int:
        """Drop all but the newest `keep` commits (a group's pending ones stay); returns how many were dropped."""
        cursor = self.db.execute("DELETE FROM commits WHERE id <= (SELECT max(id) FROM commits) - ?"
                                 " AND (seq IS NOT NULL OR scope = ?)", (keep, LOCAL_SCOPE))
        return cursor.rowcount

    # -- the trust domain's records -------------------------------------------------------------

    def domain_records(self) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT kind, key, body, hlc, origin, deleted FROM domain ORDER BY kind, key")
        return [{"kind": k, "key": key, "body": orjson.loads(b), "hlc": h, "origin": o, "deleted": bool(d)}
                for k, key, b, h, o, d in rows]

    def put_domain_record(self, record: dict[str, Any]) -> None:
        self.db.execute("INSERT OR REPLACE INTO domain (kind, key, body, hlc, origin, deleted)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        (record["kind"], record["key"], _json(record["body"]), record["hlc"], record["origin"],
                         int(record["deleted"])))

    def clear_domain(self) -> None:
        self.db.execute("DELETE FROM domain")

    # -- failover events (local to this device) -------------------------------------------------

    def add_event(self, traffic_group: str, from_state: str, to_state: str, reason: str) -> dict[str, Any]:
        at = time.time()
        cursor = self.db.execute("INSERT INTO events (at, traffic_group, from_state, to_state, reason)"
                                 " VALUES (?, ?, ?, ?, ?)", (at, traffic_group, from_state, to_state, reason))
        return {"id": cursor.lastrowid, "at": at, "traffic_group": traffic_group, "from_state": from_state,
                "to_state": to_state, "reason": reason}

    def events(self, limit: int, traffic_group: str | None = None) -> list[dict[str, Any]]:
        """The latest events, oldest first."""
        sql, args = "SELECT id, at, traffic_group, from_state, to_state, reason FROM events", []
        if traffic_group is not None:
            sql, args = sql + " WHERE traffic_group = ?", [traffic_group]
        rows = self.db.execute(sql + " ORDER BY id DESC LIMIT ?", [*args, limit]).fetchall()
        keys = ("id", "at", "traffic_group", "from_state", "to_state", "reason")
        return [dict(zip(keys, row, strict=True)) for row in reversed(rows)]

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
