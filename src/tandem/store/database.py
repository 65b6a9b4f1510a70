"""SQLite store: objects, the log of transactions, version vectors, and the device's own records.

Every change of an object makes a new version of it, written in a transaction. A local transaction
appends one log record per replication scope it touches (a device group, or '' for this device only,
as the `scope_of` rule says): this device's next sequence number in that scope (none while the scope
does not send changes: pending), the version vector of the scope with it, and its changes. Records
of other devices are appended as they came. Versions carry the stamp (hybrid clock, origin) of
their change and the sequence and vector of their record.

Threads: after `start`, every write runs on one writer thread with the store's own connection
(`write`, `submit`); any other thread reads through a connection of its own, so that reads never
wait for writes (WAL). Small writes of the device's own records (metadata, tokens, failover events,
the trust domain's records) made on other threads are queued to the writer in order (`flush` waits
for them). Version vectors and digests change in memory only when a transaction commits. Listeners
(`on_commit`, `on_keys`) are called on the event loop after it commits.

The database runs in WAL mode with `synchronous=NORMAL`: a transaction is in the WAL when COMMIT
returns, so an acknowledged write survives the process being killed at any moment
(`synchronous=FULL`, `durable=True`, also survives a power cut, at a cost per write).

The database and its WAL and shared-memory files are readable by their owner only (they hold the trust
domain's secret and password hashes). A transaction that cannot be written (disk full, I/O error) is
rolled back whole and raises `InsufficientStorage`; reads go on, and writes succeed again once there is
room, without a restart.
"""

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
import os
import queue
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import astuple, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from tandem.errors import InsufficientStorage
from tandem.models.cluster import DomainRecord
from tandem.store.clock import HybridClock, Stamp
from tandem.store.digest import BUCKETS, Digest, bucket_of, combine, home_partition, version_hash
from tandem.store.reader import LOG_COLUMNS, IndexOf, Reader, Record, connect, log_record
from tandem.store.records import (
    AuditEntry,
    AuditQuery,
    Body,
    DraftWrite,
    FailoverEvent,
    Key,
    LogRecord,
    Vector,
    Version,
)

log = logging.getLogger("tandem.store")

GLOBAL = ""
"""The partition value of objects that belong to no partition (partitions, users)."""
LOCAL_SCOPE = ""
"""The scope of changes that stay on this device."""

CHECKPOINT_EVERY = 1.0
"""Seconds between copies of the WAL into the database (by the checkpoint thread)."""
WRITER_CACHE_KIB = 65536
"""Page cache of the writer's connection (SQLite's default is 2 MiB): a 10,000-object write stays in it."""
PRIVATE = 0o600
"""The mode of the database and its WAL and shared-memory files."""
_SQLITE_IOERR, _SQLITE_FULL = 10, 13
"""SQLite's primary result codes of a write the disk refused."""
STORE_FILE = "tandem.db"
"""The store's file in a device's data directory."""
SCHEMA_VERSION = 2
"""The store's layout, kept in SQLite's `user_version`: 0, a store of before it was kept (perhaps with the old
`commits` table); 1, the log of records; 2, failover events with their kind. A store is brought to it when
opened (`MIGRATIONS`, in one transaction); one of a later layout is refused."""
_EVENT_COLUMNS = "id, at, traffic_group, from_state, to_state, reason, kind"
_AUDIT_COLUMNS = "id, at, user, role, source, via, action, target, status, detail"
"""The columns of an audit entry, in the order of `AuditEntry`'s fields."""
"""The columns of a failover event, in the order of `FailoverEvent`'s fields."""


@dataclass(frozen=True, slots=True)
class ScopeRule:
    """Where a change to an object replicates, and whether it is sent (sequenced) at once."""

    scope: str = LOCAL_SCOPE
    sequenced: bool = True


ScopeOf = Callable[[str, str, str], ScopeRule]
"""(kind, partition, name) -> the rule for changes to that object."""


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def make_private(path: Path) -> None:
    """Create the database file `path` readable by its owner only, and make it and its WAL and shared-memory
    files so if they exist (SQLite gives the ones it creates later the database's mode), whatever the umask."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE))
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(file, PRIVATE)


def read_meta(path: Path, key: str) -> str | None:
    """A metadata value of the store in `path` (None: no store, or no such value), read only: for tools that
    run while the device is stopped."""
    if not path.exists():
        return None
    with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
        try:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        except sqlite3.OperationalError:  # no meta table: not a device's store yet
            return None
    return row[0] if row else None


def copy_store(path: Path, into: Path) -> int:
    """Write a consistent copy of the store in `path` (a device may be writing it) to the new file `into`,
    without its login tokens (a copy restored elsewhere lets nobody in on a token of this device); returns
    how many live objects it holds."""
    with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
        db.execute("VACUUM INTO ?", (str(into),))  # one read transaction: one point in time
    with contextlib.closing(sqlite3.connect(into, isolation_level=None)) as copy:
        copy.execute("DELETE FROM tokens")
        return copy.execute("SELECT count(*) FROM objects WHERE deleted = 0").fetchone()[0]


def write_meta(path: Path, key: str, value: str) -> None:
    """Set a metadata value of the store in `path` (a stopped device's): for tools that prepare a store."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))


def storage_error(error: sqlite3.Error) -> InsufficientStorage | None:
    """The API's error for a write the disk refused (full, or failing), else None."""
    if getattr(error, "sqlite_errorcode", 0) & 0xFF not in (_SQLITE_FULL, _SQLITE_IOERR):
        return None
    return InsufficientStorage(f"the device cannot write its data ({error}); nothing was changed: free space in its"
                               " data directory and retry")


class Transaction:
    """Reads and writes inside one SQLite transaction (on the writer); all of it commits or none does."""

    def __init__(self, store: "Store") -> None:
        self._store = store
        self.logs: dict[str, LogRecord] = {}
        """The log record of this transaction in each scope it touched, by scope."""
        self._positions: dict[str, dict[tuple[str, str, str], int]] = {}
        """Per scope, where each object's change is in the record."""

    def get(self, kind: str, partition: str, name: str) -> Body | None:
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

    def put(self, kind: str, partition: str, name: str, body: Body, stamp: Stamp | None = None) -> int:
        """Create or replace an object (at `stamp`, from `stamp()`, if given); returns its log record's id."""
        return self._change(kind, partition, name, body, stamp)

    def delete(self, kind: str, partition: str, name: str) -> int:
        """Delete an object (leaving a tombstone); returns its log record's id."""
        return self._change(kind, partition, name, None, None)

    def _change(self, kind: str, partition: str, name: str, body: Body | None, stamp: Stamp | None) -> int:
        store = self._store
        record = self.log_of(store.scope_of(kind, partition, name))
        hlc = stamp.hlc if stamp else store.clock.now()
        position = self._positions.setdefault(record.scope, {})
        key = (kind, partition, name)
        if key in position:  # a record holds one change per object, its last (all share the record's seq)
            record.changes[position[key]] = (kind, partition, name, hlc, body)
        else:
            position[key] = len(record.changes)
            record.changes.append((kind, partition, name, hlc, body))
        store.write_version(Version(kind, partition, name, body, hlc, record.origin, record.seq, record.vv,
                                    body is None), record.id)
        return record.id

    def bulk(self, writes: dict[Key, DraftWrite], old: dict[Key, Version | None],
             digest_changes: dict[Key, tuple[str, int, int]], refs_of: dict[Key, list[tuple[str, str]]]) -> None:
        """Write many objects at once, prepared away from the writer (`draft.Draft`): per object its body
        (None: delete), stamp clock and body JSON, its current version, its digest change, its references."""
        store = self._store
        pending = store._transaction_state()
        vv_json: dict[str, str | None] = {}
        objects, keys, refs, indexed = [], [], [], []
        """Object rows; keys written; references to index; keys whose old references go (live before)."""
        for key, (body, hlc, body_json) in writes.items():
            kind, partition, name = key
            record = self.log_of(store.scope_of(kind, partition, name))
            record.changes.append((kind, partition, name, hlc,
                                   None if body_json is None else orjson.Fragment(body_json)))
            vv = vv_json.get(record.scope) or vv_json.setdefault(record.scope, _json(record.vv))
            objects.append((kind, partition, name, body_json, hlc, record.origin, record.seq, vv, record.id,
                            int(body is None)))
            keys.append(key)
            refs += [(field, value, kind, partition, name) for field, value in refs_of.get(key, [])]
            pending.digest_changes.append(digest_changes[key])
            before = old[key]
            if before is not None and not before.deleted:
                indexed.append(key)
        pending.keys += keys
        db = store.db
        db.executemany("INSERT OR REPLACE INTO objects (kind, partition, name, body, hlc, origin, seq, vv, commit_id,"
                       " deleted) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", objects)
        db.executemany("DELETE FROM refs WHERE kind = ? AND partition = ? AND name = ?", indexed)
        db.executemany("INSERT OR IGNORE INTO refs (field, value, kind, partition, name) VALUES (?, ?, ?, ?, ?)", refs)

    def log_of(self, rule: ScopeRule) -> LogRecord:
        """This transaction's log record in the rule's scope, begun on first use."""
        record = self.logs.get(rule.scope)
        if record is None:
            store = self._store
            vector = store.vector(rule.scope)
            seq = vector.get(store.device_id, 0) + 1 if rule.sequenced else None
            vv = vector | ({store.device_id: seq} if seq is not None else {})
            record = store.append(LogRecord(store.device_id, seq, vv, [], rule.scope))
            if seq is not None:
                store.set_version(rule.scope, store.device_id, seq)
            self.logs[rule.scope] = record
        return record

    def finish(self) -> None:
        """Write the changes into the log records (before COMMIT)."""
        for record in self.logs.values():
            self._store.db.execute("UPDATE log SET changes = ? WHERE id = ?", (_json(record.changes), record.id))


class NewerStore(ValueError):
    """The store was written by a later release, whose layout this one does not know."""


def _log_records_from_commits(db: sqlite3.Connection) -> None:
    """To layout 1: the log had one row per object change (`commits`); each becomes a record of one change, with
    its sequence number (version vectors stay as they are)."""
    if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'commits'").fetchone():
        db.execute("INSERT INTO log (id, scope, origin, seq, vv, changes) SELECT id, scope, origin, seq, vv,"
                   " json_array(json_array(kind, partition, name, hlc, json(body))) FROM commits ORDER BY id")
        db.execute("DROP TABLE commits")


def _event_kinds(db: sqlite3.Connection) -> None:
    """To layout 2: failover events have a kind (`transition`, or `path` for a heartbeat path)."""
    if "kind" not in {row[1] for row in db.execute("PRAGMA table_info(events)")}:
        db.execute("ALTER TABLE events ADD COLUMN kind TEXT NOT NULL DEFAULT 'transition'")


MIGRATIONS = (_log_records_from_commits, _event_kinds)
"""The steps from each layout to the next: `MIGRATIONS[n]` takes layout n to n + 1."""


class Store(Reader):
    """The single source of truth of one device."""

    def __init__(self, path: Path, *, durable: bool = False, index_of: IndexOf = lambda kind, partition, body: []
                 ) -> None:
        """The store in `path`; `index_of` names the references of each object to index (none by default)."""
        self.path = path
        self._durable = durable
        make_private(path)
        self._writer_db = self._connect()
        self._writer_db.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
        self._check_version()
        self._writer_db.executescript(resources.files("tandem.store").joinpath("schema.sql").read_text())
        self._local = threading.local()
        self._thread: threading.Thread | None = None
        self._checkpointer: threading.Thread | None = None
        self._closing = threading.Event()
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._queued: concurrent.futures.Future | None = None
        """The last small write queued: once it is done, so are all queued before it."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self.lock = threading.RLock()
        """Held while what a commit changes in memory (vectors, digests) is published."""
        self._meta = dict(self._writer_db.execute("SELECT key, value FROM meta").fetchall())
        self._migrate()
        self.device_id = self.meta("device_id") or self._set_meta_once("device_id", str(uuid.uuid4()))
        row = self._writer_db.execute("SELECT coalesce(max(hlc), 0) FROM objects").fetchone()
        self.clock = HybridClock(row[0])
        self.scope_of: ScopeOf = lambda kind, partition, name: ScopeRule()
        self.index_of = index_of
        self.on_commit: list[Callable[[list[LogRecord]], None]] = []
        """Called after each committed local transaction with its sequenced log records of groups."""
        self.on_keys: list[Callable[[list[tuple[str, str, str]]], None]] = []
        """Called after every committed transaction with the keys (kind, partition, name) of the objects it
        changed."""
        self._vectors: dict[str, Vector] = {}
        for scope, origin, seq in self._writer_db.execute("SELECT scope, origin, seq FROM versions"):
            self._vectors.setdefault(scope, {})[origin] = seq
        self._digests: dict[str, Digest] = {}
        for kind, partition, name, hlc, origin, deleted in self._writer_db.execute(
                "SELECT kind, partition, name, hlc, origin, deleted FROM objects"):
            self._xor(kind, partition, name, version_hash(kind, partition, name, hlc, origin, bool(deleted)),
                      self._digests)
        self.generation = 0
        """Counts transactions that changed objects without log records (snapshots applied): a draft made
        before one is stale."""
        self.trimmed_through = 0
        """The highest log id trimmed since this store opened (a draft whose snapshot is older is stale)."""
        self._pending: _Pending | None = None

    def _connect(self) -> sqlite3.Connection:
        return connect(self.path, self._durable)

    def _check_version(self) -> None:
        version = self._writer_db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise NewerStore(f"{self.path} was written by a later release of Tandem (store layout {version}; this "
                             f"release reads up to {SCHEMA_VERSION}): run that release, or restore a backup")

    def _migrate(self) -> None:
        """Bring a store of an earlier layout to `SCHEMA_VERSION`, all or nothing."""
        db = self._writer_db
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        db.execute("BEGIN IMMEDIATE")
        for migration in MIGRATIONS[version:]:
            migration(db)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")

    # -- threads ----------------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """From now on, write on the writer thread and call the listeners on `loop`; copy the WAL into the
        database on a thread of its own (a commit never waits for a checkpoint)."""
        self._loop = loop
        self._writer_db.execute("PRAGMA wal_autocheckpoint=0")
        self._thread = threading.Thread(target=self._write_loop, name="tandem-store-writer", daemon=True)
        self._thread.start()
        self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="tandem-store-checkpoint",
                                              daemon=True)
        self._checkpointer.start()

    def close(self) -> None:
        self._closing.set()
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
            self._thread = None
        if self._checkpointer is not None:
            self._checkpointer.join()
            self._checkpointer = None
        self._writer_db.close()

    def _checkpoint_loop(self) -> None:
        db = self._connect()
        failing = False
        try:
            while not self._closing.wait(CHECKPOINT_EVERY):
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error as error:  # a full disk: the WAL keeps the data, tried again next time
                    if not failing:
                        log.error("cannot copy the WAL into the database: %s", error)
                    failing = True
                else:
                    if failing:
                        log.info("copying the WAL into the database again")
                    failing = False
        finally:
            db.close()

    def _write_loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, args, future = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args)
            except BaseException as error:  # the caller gets it
                future.set_exception(error)
            else:
                future.set_result(result)

    @property
    def threaded(self) -> bool:
        """Whether writes run on the writer thread (`start`)."""
        return self._thread is not None

    def on_writer(self) -> bool:
        """Whether the calling thread may write now (the writer thread, or no writer thread yet)."""
        return self._thread is None or threading.current_thread() is self._thread

    def submit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future:
        """Run `fn(*args)` on the writer (at once when already there), after what was submitted before."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        if self.on_writer():
            try:
                future.set_result(fn(*args))
            except Exception as error:
                future.set_exception(error)
            return future
        self._jobs.put((fn, args, future))
        return future

    async def write(self, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(*args)` run on the writer; its result (or its exception)."""
        return await asyncio.wrap_future(self.submit(fn, *args))

    async def flush(self) -> None:
        """Wait until every write queued so far (`_queue`) is done (the writer runs them in order: the last one
        done, all are). A failed one was logged; it does not fail the caller."""
        queued = self._queued
        if queued is not None and not queued.done():
            waited = asyncio.wrap_future(queued)
            await asyncio.wait([waited])
            if not waited.cancelled():
                waited.exception()  # a failure was logged when it happened: taken here, asyncio says nothing more

    def _queue(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run a small write on the writer: at once when already there, else queued (its failure is logged)."""
        if self.on_writer():
            fn(*args)
            return
        future = self.submit(fn, *args)
        future.add_done_callback(lambda f: f.exception() and log.error("store write failed: %s", f.exception()))
        self._queued = future

    def _notify(self, listener: Callable[..., None], *args: Any) -> None:
        if self._loop is None or self._thread is None:
            listener(*args)
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: the device is stopping
            self._loop.call_soon_threadsafe(listener, *args)

    @property
    def db(self) -> sqlite3.Connection:
        """The connection of the calling thread: the writer's on the writer, else one of its own."""
        if self.on_writer():
            return self._writer_db
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = self._connect()
            db.execute("PRAGMA query_only=ON")
        return db

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads on this thread see one state of the store until the block ends (in a transaction: its own)."""
        db = self.db
        if db.in_transaction:
            yield
            return
        db.execute("BEGIN")
        try:
            yield
        finally:
            db.execute("ROLLBACK")

    # -- metadata -------------------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        return self._meta.get(key)

    def set_meta(self, key: str, value: str | None) -> None:
        if value is None:
            self._meta.pop(key, None)
        else:
            self._meta[key] = value
        self._queue(self._write_meta, key, value)

    def _write_meta(self, key: str, value: str | None) -> None:
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
        """One atomic unit of work on the writer: commits on leaving the block, rolls back on an exception.
        Its local changes get log records; replicated ones may be appended too (`append`, `write_version`)."""
        with self.atomic() as pending:
            txn = Transaction(self)
            yield txn
            txn.finish()
            pending.sequenced = [r for r in txn.logs.values() if r.seq is not None and r.scope != LOCAL_SCOPE]

    @contextmanager
    def atomic(self) -> Iterator["_Pending"]:
        """A SQLite transaction on the writer; what it changes in memory is published when it commits."""
        if not self.on_writer():
            raise RuntimeError("writes run on the store's writer thread (Store.write)")
        if self._pending is not None:
            raise RuntimeError("transactions do not nest")
        pending = self._pending = _Pending()
        db = self.db
        try:
            db.execute("BEGIN IMMEDIATE")
            yield pending
            db.execute("COMMIT")
        except BaseException as error:
            self._roll_back()
            if isinstance(error, sqlite3.Error) and (refused := storage_error(error)) is not None:
                raise refused from error
            raise
        else:
            self._publish(pending)
        finally:
            self._pending = None

    def _roll_back(self) -> None:
        """End the failed transaction: nothing of it stays (SQLite may have rolled it back already, as after a
        failed COMMIT on a full disk, or left it open); what it changed in memory is dropped with `_pending`."""
        if self._writer_db.in_transaction:
            try:
                self._writer_db.execute("ROLLBACK")
            except sqlite3.Error as error:
                log.error("cannot roll back a failed transaction: %s", error)

    def _publish(self, pending: "_Pending") -> None:
        with self.lock:
            for scope, vector in pending.vectors.items():
                self._vectors[scope] = vector
            for partition, bucket, value in pending.digest_changes:
                self._digests.setdefault(partition, [0] * BUCKETS)[bucket] ^= value
            if pending.generation:
                self.generation += 1
        if pending.keys:
            for keys_listener in self.on_keys:
                self._notify(keys_listener, pending.keys)
        if pending.sequenced:
            for commit_listener in self.on_commit:
                self._notify(commit_listener, pending.sequenced)

    def append(self, record: LogRecord, scope: str | None = None) -> LogRecord:
        """Add a log record (in `scope`, else its own); returns it as kept here, with its id and scope."""
        scope = record.scope if scope is None else scope
        cursor = self.db.execute("INSERT INTO log (scope, origin, seq, vv, changes) VALUES (?, ?, ?, ?, ?)",
                                 (scope, record.origin, record.seq, _json(record.vv), _json(record.changes)))
        assert cursor.lastrowid is not None
        return dataclasses.replace(record, scope=scope, id=cursor.lastrowid)

    def write_version(self, version: Version, commit_id: int) -> None:
        """Make `version` (with its `deleted` flag) the object's current version."""
        kind, partition, name = version.key
        deleted = version.deleted
        old = self.version(kind, partition, name)
        self._changed(old, version)
        self.db.execute(
            "INSERT OR REPLACE INTO objects (kind, partition, name, body, hlc, origin, seq, vv, commit_id, deleted)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (kind, partition, name, None if deleted else _json(version.body), version.hlc, version.origin,
             version.seq, _json(version.vv), commit_id, int(deleted)))
        self.index(kind, partition, name, None if deleted else version.body)

    def _changed(self, old: Version | None, new: Version | None) -> None:
        """Note in the transaction how a version replaces another (for the digests and `on_keys`)."""
        pending = self._transaction_state()
        version = new or old
        assert version is not None
        kind, partition, name = version.key
        change = 0
        for side in (old, new):
            if side is not None:
                change ^= version_hash(kind, partition, name, side.hlc, side.origin, side.deleted)
        pending.digest_changes.append((home_partition(kind, partition, name),
                                       bucket_of(kind, partition, name), change))
        pending.keys.append((kind, partition, name))

    def _transaction_state(self) -> "_Pending":
        if self._pending is None:
            raise RuntimeError("objects change only inside a transaction")
        return self._pending

    def index(self, kind: str, partition: str, name: str, body: Body | None) -> None:
        """Keep the references of one object (None: it is gone) in the index."""
        self.db.execute("DELETE FROM refs WHERE kind = ? AND partition = ? AND name = ?", (kind, partition, name))
        if body is not None:
            self.db.executemany(
                "INSERT OR IGNORE INTO refs (field, value, kind, partition, name) VALUES (?, ?, ?, ?, ?)",
                [(field, value, kind, partition, name) for field, value in self.index_of(kind, partition, body)])

    # -- version vectors and digests -------------------------------------------------------------

    def vector(self, scope: str) -> Vector:
        """The version vector of a scope (a copy): per origin device, the highest sequence applied here;
        inside a transaction on the writer, as that transaction changed it so far."""
        if self._pending is not None and self.on_writer():
            vector = self._pending.vectors.get(scope)
            if vector is not None:
                return dict(vector)
        with self.lock:
            return dict(self._vectors.get(scope, {}))

    def set_version(self, scope: str, origin: str, seq: int) -> None:
        pending = self._transaction_state()
        pending.vectors[scope] = self.vector(scope) | {origin: seq}
        self.db.execute("INSERT OR REPLACE INTO versions (scope, origin, seq) VALUES (?, ?, ?)", (scope, origin, seq))

    def drop_scope_versions(self, scope: str) -> None:
        """Forget what was applied of a scope (this device left its group); queued from any thread."""
        def drop() -> None:
            with self.lock:
                self._vectors.pop(scope, None)
            self.db.execute("DELETE FROM versions WHERE scope = ?", (scope,))
        self._queue(drop)

    def digest(self, partitions: Iterable[str]) -> Digest:
        """The digest of the objects of these partitions (partition objects included), as committed."""
        with self.lock:
            return combine([self._digests[p] for p in partitions if p in self._digests])

    def reindex(self, kinds: Iterable[str]) -> None:
        """Build the reference index of every live object of `kinds` anew."""
        for kind in kinds:
            self.db.execute("DELETE FROM refs WHERE kind = ?", (kind,))
            for record in list(self.records(kind)):
                self.index(kind, record.partition, record.name, record.body)

    def origin_commits(self, scope: str, origin: str, after: int, limit: int) -> list[LogRecord] | None:
        """The log records of `origin` in `scope` with sequence after `after`, in order, as many as hold
        `limit` changes (at least one); None when the log no longer holds the next one (trimmed, or never
        received here: a full load is needed)."""
        out: list[LogRecord] = []
        changes = 0
        rows = self.db.execute(f"SELECT {', '.join(LOG_COLUMNS)} FROM log WHERE scope = ? AND origin = ?"
                               " AND seq > ? ORDER BY seq", (scope, origin, after))
        for row in rows:
            record = log_record(row)
            if out and changes + len(record.changes) > limit:
                break
            out.append(record)
            changes += len(record.changes)
        if out and out[0].seq != after + 1:
            return None
        if not out and self.vector(scope).get(origin, 0) > after:
            return None
        return out

    def rewrite_body(self, kind: str, partition: str, name: str, body: Body) -> None:
        """Change an object's stored body in place, its version unchanged (a format upgrade, not a change)."""
        self.db.execute("UPDATE objects SET body = ? WHERE kind = ? AND partition = ? AND name = ?",
                        (_json(body), kind, partition, name))

    def note_unlogged(self) -> None:
        """This transaction changes objects without log records (a snapshot applied): drafts made before are
        stale."""
        self._transaction_state().generation = True

    def remove_version(self, kind: str, partition: str, name: str) -> None:
        """Forget an object entirely (a replacing full load, a format upgrade): no log record says so."""
        self._changed(self.version(kind, partition, name), None)
        self.note_unlogged()
        self.db.execute("DELETE FROM objects WHERE kind = ? AND partition = ? AND name = ?", (kind, partition, name))
        self.index(kind, partition, name, None)

    def sequence(self, record: LogRecord, seq: int) -> LogRecord:
        """Give a pending log record its sequence number (and its object versions, where still current);
        returns it sequenced."""
        sequenced = dataclasses.replace(record, seq=seq, vv=record.vv | {record.origin: seq})
        vv = _json(sequenced.vv)
        self.db.execute("UPDATE log SET seq = ?, vv = ? WHERE id = ?", (seq, vv, record.id))
        self.db.execute("UPDATE objects SET seq = ?, vv = ? WHERE commit_id = ?", (seq, vv, record.id))
        return sequenced

    def drop_pending(self, scope: str) -> None:
        self.db.execute("DELETE FROM log WHERE scope = ? AND seq IS NULL", (scope,))

    def trim_log(self, keep: int) -> int:
        """Drop all but the newest `keep` log records (a group's pending ones stay); returns how many."""
        where = "id <= (SELECT max(id) FROM log) - ? AND (seq IS NOT NULL OR scope = ?)"
        highest = self.db.execute(f"SELECT max(id) FROM log WHERE {where}", (keep, LOCAL_SCOPE)).fetchone()[0]
        if highest is None:
            return 0
        self.trimmed_through = max(self.trimmed_through, highest)
        return self.db.execute(f"DELETE FROM log WHERE {where}", (keep, LOCAL_SCOPE)).rowcount

    # -- the trust domain's records -------------------------------------------------------------

    def domain_records(self) -> list[DomainRecord]:
        """The trust domain's records as this device last stored them."""
        rows = self.db.execute("SELECT kind, key, body, hlc, origin, deleted FROM domain ORDER BY kind, key")
        return [DomainRecord(kind=k, key=key, body=orjson.loads(b), hlc=h, origin=o, deleted=bool(d))
                for k, key, b, h, o, d in rows]

    def put_domain_record(self, record: DomainRecord) -> None:
        """Store a record of the trust domain (queued to the writer)."""
        self._queue(self.db_execute, "INSERT OR REPLACE INTO domain (kind, key, body, hlc, origin, deleted)"
                    " VALUES (?, ?, ?, ?, ?, ?)", (record.kind, record.key, _json(record.body), record.hlc,
                                                   record.origin, int(record.deleted)))

    def clear_domain(self) -> None:
        self._queue(self.db_execute, "DELETE FROM domain", ())

    def db_execute(self, sql: str, args: tuple) -> None:
        """One statement on the writer's connection (for the queued writes of the device's own records)."""
        self.db.execute(sql, args)

    # -- the audit trail (local to this device) -------------------------------------------------

    def add_audit(self, entry: AuditEntry) -> None:
        """Record an audit entry (its `id` is given by the store), queued on the writer."""
        self._queue(self.db_execute, f"INSERT INTO audit ({_AUDIT_COLUMNS[4:]}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    astuple(entry)[1:])

    def audit(self, query: AuditQuery) -> list[AuditEntry]:
        """The entries matching `query`, newest first."""
        sql, args = f"SELECT {_AUDIT_COLUMNS} FROM audit WHERE id < ? AND at >= ? AND at <= ?", [
            query.before if query.before is not None else 2 ** 62, query.since, query.until]
        for column in ("user", "via", "status"):
            value = getattr(query, column)
            if value is not None:
                sql, args = sql + f" AND {column} = ?", [*args, value]
        if query.action is not None:
            sql, args = sql + " AND instr(action, ?) > 0", [*args, query.action]
        rows = self.db.execute(sql + " ORDER BY id DESC LIMIT ?", [*args, query.limit]).fetchall()
        return [AuditEntry(*row) for row in rows]

    def prune_audit(self, before: float) -> None:
        """Forget the entries older than `before` (seconds since the epoch), on the writer."""
        self._queue(self.db_execute, "DELETE FROM audit WHERE at < ?", (before,))

    # -- failover events (local to this device) -------------------------------------------------

    def add_event(self, traffic_group: str, from_state: str, to_state: str, reason: str,
                  at: float | None = None, kind: str = "transition") -> concurrent.futures.Future:
        """Record a failover event on the writer; the future is done once it is."""
        return self.submit(self.db_execute, "INSERT INTO events (at, traffic_group, from_state, to_state, reason, "
                           "kind) VALUES (?, ?, ?, ?, ?, ?)",
                           (at or time.time(), traffic_group, from_state, to_state, reason, kind))

    def events(self, limit: int, traffic_group: str | None = None) -> list[FailoverEvent]:
        """The latest events, oldest first."""
        sql, args = f"SELECT {_EVENT_COLUMNS} FROM events", []
        if traffic_group is not None:
            sql, args = sql + " WHERE traffic_group = ?", [traffic_group]
        rows = self.db.execute(sql + " ORDER BY id DESC LIMIT ?", [*args, limit]).fetchall()
        return [FailoverEvent(*row) for row in reversed(rows)]

    def events_after(self, after: int, traffic_group: str | None = None, limit: int = 1000) -> list[FailoverEvent]:
        """The first `limit` events after the event of id `after`, oldest first."""
        sql, args = f"SELECT {_EVENT_COLUMNS} FROM events WHERE id > ?", [after]
        if traffic_group is not None:
            sql, args = sql + " AND traffic_group = ?", [*args, traffic_group]
        rows = self.db.execute(sql + " ORDER BY id LIMIT ?", [*args, limit]).fetchall()
        return [FailoverEvent(*row) for row in rows]

    def transition_counts(self) -> dict[tuple[str, str], int]:
        """How many transitions this device recorded, by (traffic group, state it went to)."""
        rows = self.db.execute("SELECT traffic_group, to_state, COUNT(*) FROM events WHERE kind = 'transition' "
                               "GROUP BY traffic_group, to_state").fetchall()
        return {(group, state): count for group, state, count in rows}

    # -- tokens (local to this device, never replicated) -----------------------------------------

    def add_token(self, token_hash: str, username: str, expires_at: float) -> None:
        self._queue(self.db_execute, "INSERT INTO tokens (hash, username, expires_at) VALUES (?, ?, ?)",
                    (token_hash, username, expires_at))

    def token(self, token_hash: str) -> tuple[str, float] | None:
        row = self.db.execute("SELECT username, expires_at FROM tokens WHERE hash = ?", (token_hash,)).fetchone()
        return (row[0], row[1]) if row else None

    def remove_tokens(self, *, token_hash: str | None = None, username: str | None = None,
                      expired_before: float | None = None) -> None:
        if token_hash is not None:
            self._queue(self.db_execute, "DELETE FROM tokens WHERE hash = ?", (token_hash,))
        if username is not None:
            self._queue(self.db_execute, "DELETE FROM tokens WHERE username = ?", (username,))
        if expired_before is not None:
            self._queue(self.db_execute, "DELETE FROM tokens WHERE expires_at < ?", (expired_before,))

    # -- digests at open ---------------------------------------------------------------------------

    @staticmethod
    def _xor(kind: str, partition: str, name: str, value: int, digests: dict[str, Digest]) -> None:
        home = home_partition(kind, partition, name)
        digests.setdefault(home, [0] * BUCKETS)[bucket_of(kind, partition, name)] ^= value


@dataclass
class _Pending:
    """What a transaction changes in memory, published when it commits."""

    vectors: dict[str, Vector]
    digest_changes: list[tuple[str, int, int]]
    keys: list[tuple[str, str, str]]
    sequenced: list[LogRecord]
    generation: bool

    def __init__(self) -> None:
        self.vectors, self.digest_changes, self.keys, self.sequenced = {}, [], [], []
        self.generation = False
