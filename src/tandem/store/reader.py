"""Reading the store: objects, the reference index, the log. `Store` reads this way on each thread;
a process of its own (a batch's worker) opens a `Reader` of its own."""

import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from tandem.store.clock import Stamp
from tandem.store.records import Body, LogRecord, Version

IndexOf = Callable[[str, str, Body], list[tuple[str, str]]]
"""(kind, partition, body) -> the (field, value) references of that object to keep an index of."""


@dataclass(frozen=True, slots=True)
class Record:
    """One live object as stored."""

    kind: str
    partition: str
    name: str
    body: Body
    commit_id: int
    stamp: Stamp


LOG_COLUMNS = ("id", "scope", "origin", "seq", "vv", "changes")
VERSION_COLUMNS = ("kind", "partition", "name", "body", "hlc", "origin", "seq", "vv", "deleted")


def log_record(row: tuple) -> LogRecord:
    """A row of `LOG_COLUMNS`."""
    record_id, scope, origin, seq, vv, changes = row
    return LogRecord(origin, seq, orjson.loads(vv), orjson.loads(changes), scope, record_id)


def version_of(row: tuple) -> Version:
    """A row of `VERSION_COLUMNS`."""
    kind, partition, name, body, hlc, origin, seq, vv, deleted = row
    return Version(kind, partition, name, orjson.loads(body) if body is not None else None, hlc, origin, seq,
                   orjson.loads(vv), bool(deleted))


def connect(path: Path, durable: bool = False) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
    db.execute("PRAGMA busy_timeout=60000")
    return db


class Reader:
    """Reads of the objects, the index and the log through `db`."""

    index_of: IndexOf

    @property
    def db(self) -> sqlite3.Connection:
        raise NotImplementedError

    @classmethod
    def open(cls, path: Path, index_of: IndexOf) -> "Reader":
        """A reader of its own (one connection, reads only), for another process."""
        return _OwnReader(path, index_of)

    def get(self, kind: str, partition: str, name: str) -> Body | None:
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

    def keys(self, kind: str) -> list[tuple[str, str]]:
        """The (partition, name) of every live object of a kind, bodies unread."""
        return self.db.execute("SELECT partition, name FROM objects WHERE kind = ? AND deleted = 0",
                               (kind,)).fetchall()

    def refs(self, field: str) -> list[tuple[str, str, str, str]]:
        """Every indexed reference of one field: (value, kind, partition, name) of the referring object."""
        return self.db.execute("SELECT value, kind, partition, name FROM refs WHERE field = ?", (field,)).fetchall()

    def references_of(self, kind: str, partition: str, name: str) -> list[tuple[str, str]]:
        """The indexed references (field, value) of one live object (see `index_of`)."""
        return self.db.execute("SELECT field, value FROM refs WHERE kind = ? AND partition = ? AND name = ?",
                               (kind, partition, name)).fetchall()

    def referrers(self, field: str, value: str) -> list[tuple[str, str, str]]:
        """The live objects (kind, partition, name) whose indexed `field` is `value` (see `index_of`)."""
        return self.db.execute("SELECT kind, partition, name FROM refs WHERE field = ? AND value = ?"
                               " ORDER BY kind, partition, name", (field, value)).fetchall()

    def last_commit_id(self) -> int:
        """The id of the last log record (each local transaction adds one per scope it touches)."""
        return self.db.execute("SELECT coalesce(max(id), 0) FROM log").fetchone()[0]

    def version(self, kind: str, partition: str, name: str) -> Version | None:
        """The current version of an object, tombstones included."""
        row = self.db.execute(f"SELECT {', '.join(VERSION_COLUMNS)} FROM objects"
                              " WHERE kind = ? AND partition = ? AND name = ?", (kind, partition, name)).fetchone()
        return version_of(row) if row else None

    def versions(self, kind: str, partition: str, prefix: str) -> list[Version]:
        """The live versions of one kind in a partition whose names start with `prefix`."""
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        rows = self.db.execute(f"SELECT {', '.join(VERSION_COLUMNS)} FROM objects WHERE kind = ? AND partition = ?"
                               " AND name >= ? AND name < ? AND deleted = 0", (kind, partition, prefix, end))
        return [version_of(row) for row in rows]

    def scope_versions(self, partitions: Iterable[str]) -> Iterator[Version]:
        """Every object version (tombstones included) of the given partitions, partition objects included."""
        names = list(partitions)
        if not names:
            return
        marks = ", ".join("?" * len(names))
        yield from (version_of(row) for row in self.db.execute(
            f"SELECT {', '.join(VERSION_COLUMNS)} FROM objects WHERE partition IN ({marks})"
            f" OR (kind = 'partitions' AND partition = '' AND name IN ({marks})) ORDER BY kind, partition, name",
            names + names))

    def kind_versions(self, kind: str) -> list[Version]:
        """Every version of one kind, tombstones included."""
        rows = self.db.execute(f"SELECT {', '.join(VERSION_COLUMNS)} FROM objects WHERE kind = ?", (kind,))
        return [version_of(row) for row in rows]

    def pending(self, scope: str) -> list[LogRecord]:
        """Local log records of `scope` not yet sequenced (auto-sync off), oldest first."""
        rows = self.db.execute(f"SELECT {', '.join(LOG_COLUMNS)} FROM log WHERE scope = ? AND seq IS NULL"
                               " ORDER BY id", (scope,)).fetchall()
        return [log_record(row) for row in rows]

    def pending_count(self, scope: str) -> int:
        """How many changes of `scope` are pending (auto-sync off)."""
        return self.db.execute("SELECT coalesce(sum(json_array_length(changes)), 0) FROM log"
                               " WHERE scope = ? AND seq IS NULL", (scope,)).fetchone()[0]


class _OwnReader(Reader):
    def __init__(self, path: Path, index_of: IndexOf) -> None:
        self._db = connect(path)
        self._db.execute("PRAGMA query_only=ON")
        self.index_of = index_of

    @property
    def db(self) -> sqlite3.Connection:
        return self._db

    def close(self) -> None:
        self._db.close()
