"""Drafts: a large write computed away from the writer, then committed in one short transaction.

A draft reads a consistent snapshot through a reader (one read transaction), keeps its writes in
memory (its reads see them) and notes what it read: keys, scans, references. What it prepared
(`Prepared`, plain data: it may come from another process) is written by the writer (`commit`) after
checking the log records appended since the snapshot against what the draft read and wrote: if none
touches them, in bulk; else the draft is stale (`StaleDraft`) and the caller computes it again. Every
other write waits for the bulk write only, not for the checks and the computing: a batch of 10,000
operations holds the writer for tens of milliseconds instead of a second (bench/batch.py,
bench/load.py).
"""

from dataclasses import dataclass, field
from typing import Any

import orjson

from tandem.store import digest
from tandem.store.clock import Stamp
from tandem.store.database import Store
from tandem.store.reader import VERSION_COLUMNS, Reader, Record, version_of
from tandem.store.records import Body, DraftWrite, Key, Version


class StaleDraft(Exception):
    """Something the draft read changed after its snapshot: compute it again."""


class StampsUsedUp(Exception):
    """The draft needed more stamps than were reserved for it."""


class BlockClock:
    """Stamps from a block reserved on the device's clock (`HybridClock.reserve`): a draft computed in
    another process stamps its writes with values the device never issues otherwise."""

    def __init__(self, first: int, count: int) -> None:
        self._next, self._end = first, first + count

    def now(self) -> int:
        if self._next >= self._end:
            raise StampsUsedUp("the draft used up its reserved stamps")
        self._next += 1
        return self._next - 1


@dataclass
class Prepared:
    """What a draft prepared: its writes and what it read, as of its snapshot."""

    snapshot: int
    """The id of the last log record the snapshot holds."""
    generation: int
    """The store's count of changes without log record when the draft began."""
    writes: dict[Key, DraftWrite] = field(default_factory=dict)
    """Per object written, in order."""
    old: dict[Key, Version | None] = field(default_factory=dict)
    """Per object written: its version in the snapshot."""
    digest_changes: dict[Key, tuple[str, int, int]] = field(default_factory=dict)
    """Per object written: its digest's partition, bucket, and the XOR that takes the bucket from the
    snapshot's version to the draft's."""
    refs_of: dict[Key, list[tuple[str, str]]] = field(default_factory=dict)
    """Per object written: its references to index."""
    read_keys: set[Key] = field(default_factory=set)
    scans: set[tuple[str, str | None, str | None]] = field(default_factory=set)
    read_refs: set[tuple[str, str]] = field(default_factory=set)


class Draft:
    """Writes computed against a snapshot of `reader` (use it on one thread, then `close` it), stamped by
    `clock` as `device_id`'s."""

    def __init__(self, reader: Reader, clock: Any, device_id: str, generation: int) -> None:
        self._reader = reader
        self._clock = clock
        self._device_id = device_id
        self._db = reader.db
        self._db.execute("BEGIN")
        snapshot = self._db.execute("SELECT coalesce(max(id), 0) FROM log").fetchone()[0]
        self.prepared = Prepared(snapshot, generation)
        self._snapshot_versions: dict[Key, Version | None] = {}
        self._buckets: dict[tuple[str, str], dict[str, Body | None]] = {}
        self._refs: dict[tuple[str, str], set[Key]] = {}

    def close(self) -> Prepared:
        """End the snapshot; what the draft prepared."""
        self._db.execute("ROLLBACK")
        return self.prepared

    # -- reads (the snapshot, then the draft's own writes) ----------------------------------------------

    def _version(self, key: Key) -> Version | None:
        """The snapshot's version of an object, read once."""
        if key not in self._snapshot_versions:
            row = self._db.execute(f"SELECT {', '.join(VERSION_COLUMNS)} FROM objects WHERE kind = ?"
                                   " AND partition = ? AND name = ?", key).fetchone()
            self._snapshot_versions[key] = None if row is None else version_of(row)
        return self._snapshot_versions[key]

    def get(self, kind: str, partition: str, name: str) -> Body | None:
        key = (kind, partition, name)
        writes = self.prepared.writes
        if key in writes:
            return writes[key][0]
        self.prepared.read_keys.add(key)
        version = self._version(key)
        return None if version is None or version.deleted else version.body

    def exists(self, kind: str, partition: str, name: str) -> bool:
        return self.get(kind, partition, name) is not None

    def record(self, kind: str, partition: str, name: str) -> Record | None:
        key = (kind, partition, name)
        if key in self.prepared.writes:
            body, hlc, _ = self.prepared.writes[key]
            return None if body is None else Record(kind, partition, name, body, 0, Stamp(hlc, self._device_id))
        body = self.get(kind, partition, name)
        version = self._version(key)
        return None if body is None or version is None else Record(kind, partition, name, body, 0, version.stamp)

    def records(self, kind: str, partition: str | None = None, prefix: str | None = None) -> list[Record]:
        writes = self.prepared.writes
        self.prepared.scans.add((kind, partition, prefix))
        out = [r for r in self._reader.records(kind, partition=partition, prefix=prefix)
               if (kind, r.partition, r.name) not in writes]
        for (bucket_kind, bucket_partition), names in self._buckets.items():
            if bucket_kind != kind or partition not in (None, bucket_partition):
                continue
            for name, body in names.items():
                if body is not None and (not prefix or name.startswith(prefix)):
                    hlc = writes[(kind, bucket_partition, name)][1]
                    out.append(Record(kind, bucket_partition, name, body, 0, Stamp(hlc, self._device_id)))
        return sorted(out, key=lambda r: (r.partition, r.name))

    def referrers(self, field: str, value: str) -> list[tuple[str, str, str]]:
        self.prepared.read_refs.add((field, value))
        found = {key for key in self._reader.referrers(field, value) if key not in self.prepared.writes}
        return sorted(found | self._refs.get((field, value), set()))

    # -- writes ------------------------------------------------------------------------------------------

    def stamp(self) -> Stamp:
        return Stamp(self._clock.now(), self._device_id)

    def put(self, kind: str, partition: str, name: str, body: Body, stamp: Stamp | None = None) -> int:
        self._write((kind, partition, name), body, stamp)
        return 0

    def delete(self, kind: str, partition: str, name: str) -> int:
        self._write((kind, partition, name), None, None)
        return 0

    def _write(self, key: Key, body: Body | None, stamp: Stamp | None) -> None:
        prepared = self.prepared
        kind, partition, name = key
        if key not in prepared.old:
            prepared.old[key] = self._version(key)
        hlc = stamp.hlc if stamp else self._clock.now()
        prepared.writes[key] = DraftWrite(body, hlc, None if body is None else orjson.dumps(body).decode())
        self._buckets.setdefault((kind, partition), {})[name] = body
        old = prepared.old[key]
        change = digest.version_hash(kind, partition, name, hlc, self._device_id, body is None)
        if old is not None:
            change ^= digest.version_hash(kind, partition, name, old.hlc, old.origin, old.deleted)
        prepared.digest_changes[key] = (digest.home_partition(*key), digest.bucket_of(*key), change)
        for ref in prepared.refs_of.pop(key, []):
            self._refs[ref].discard(key)
        if body is not None:
            refs = prepared.refs_of[key] = self._reader.index_of(kind, partition, body)
            for ref in refs:
                self._refs.setdefault(ref, set()).add(key)


def check(store: Store, prepared: Prepared) -> None:
    """On the writer, inside the transaction that writes a draft: `StaleDraft` if a log record appended since
    its snapshot touches what it read or wrote."""
    if store.generation != prepared.generation:
        raise StaleDraft("objects changed without a log record (a snapshot applied) since the draft began")
    if store.trimmed_through > prepared.snapshot:
        raise StaleDraft("the log was trimmed past the draft's snapshot")
    for key, (_, hlc, _) in prepared.writes.items():
        old = prepared.old[key]
        if old is not None and old.stamp >= Stamp(hlc, store.device_id):
            raise StaleDraft(f"{key[0]} /{key[1]}/{key[2]} has a version stamped after the draft's stamps")
    for (changes,) in store.db.execute("SELECT changes FROM log WHERE id > ?", (prepared.snapshot,)):
        for kind, partition, name, _, body in orjson.loads(changes):
            key = (kind, partition, name)
            if key in prepared.read_keys or key in prepared.writes:
                raise StaleDraft(f"{kind} /{partition}/{name} changed")
            for scan_kind, scan_partition, prefix in prepared.scans:
                if scan_kind == kind and scan_partition in (None, partition) and name.startswith(prefix or ""):
                    raise StaleDraft(f"{kind} in /{partition} changed")
            refs = store.index_of(kind, partition, body) if body is not None and prepared.read_refs else []
            if set(refs) & prepared.read_refs:
                raise StaleDraft(f"{kind} /{partition}/{name} now refers to what the draft checked")


def commit(store: Store, prepared: Prepared) -> int | None:
    """Write what a draft prepared in one transaction (on the writer): the id of its last log record, None if
    it writes nothing; `StaleDraft` if it is stale."""
    if not prepared.writes:
        return None
    with store.transaction() as txn:
        check(store, prepared)
        txn.bulk(prepared.writes, prepared.old, prepared.digest_changes, prepared.refs_of)
    return max(record.id for record in txn.logs.values())
