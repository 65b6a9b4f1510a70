"""One device's replica of a scope: applying others' commits and snapshots, and what to send them.

The resolution rule: an object's state is the version with the greatest (stamp, origin). A version
that was written without having seen the current one, while the current one had not seen it
either (their writers' version vectors are concurrent), is a conflict: the loser is recorded. So is
a pool member's change that a concurrent delete, member-list replacement or new pool hides (a pool
and its members are one unit: `tandem.config.units`). Records are written as this device's own
commits in the same transaction, so they replicate like any change (`conflicts`).
"""

from collections.abc import Iterable

from tandem.config import units
from tandem.store import LogRecord, Store, Transaction, Vector, Version
from tandem.store.digest import bucket_of
from tandem.sync import conflicts

SNAPSHOT_PART = 2000
"""Versions per snapshot message (and changes per message of log records, a record being never split)."""


class Replica:
    """Replication operations on this device's store, for one scope at a time."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def _resolve(self, txn: Transaction, incoming: Version, commit_id: int) -> None:
        """Make `incoming` the object's current version if it wins; record what concurrent writes lose."""
        store = self.store
        store.clock.observe(incoming.hlc)
        current = store.version(*incoming.key)
        if current is not None and (current.stamp == incoming.stamp or current.has_seen(incoming)):
            return
        newer = current is None or incoming.stamp > current.stamp
        judged = incoming.kind in conflicts.JUDGED_KINDS
        if judged and current is not None and not incoming.has_seen(current):
            winner, loser = (incoming, current) if newer else (current, incoming)
            conflicts.record(txn, winner, loser, "concurrent")
        if not newer:
            return
        if judged and incoming.kind == units.POOLS:
            self._rejudge_overlays(txn, current, incoming)
        store.write_version(incoming, commit_id)
        if judged and units.is_overlay(incoming.kind):
            self._judge_overlay(txn, incoming)

    def _rejudge_overlays(self, txn: Transaction, old: Version | None, new: Version) -> None:
        """Pool version `new` replaces `old`: an overlay that counted and no longer does, neither side
        having seen the other, lost to `new` (recorded); one that did not count and does again (the
        delete or replacement that hid it lost in turn) lost nothing (its record, if any, withdrawn)."""
        prefixes = {units.overlays_of(old), units.overlays_of(new)} - {None}
        for prefix in prefixes:
            for overlay in self.store.versions(units.OVERLAYS, new.partition, prefix):
                before, after = units.overlay_alive(overlay, old), units.overlay_alive(overlay, new)
                if before and not after and not new.has_seen(overlay) and not overlay.has_seen(new):
                    conflicts.record(txn, new, overlay, units.hiding_reason(overlay, new))
                elif after and not before:
                    conflicts.withdraw(txn, overlay)

    def _judge_overlay(self, txn: Transaction, overlay: Version) -> None:
        """An overlay that arrives hidden by the pool's current version, neither having seen the other,
        lost to it; unless it belongs to an incarnation of the pool not known here yet (its own pool
        version then decides, and records the whole pool if it loses)."""
        pool = self.store.version(*units.pool_key(overlay))
        if pool is None or units.overlay_alive(overlay, pool) or pool.has_seen(overlay) or overlay.has_seen(pool):
            return
        reason = units.hiding_reason(overlay, pool)
        if reason == "recreated" and not units.older_incarnation(overlay, pool):
            return
        conflicts.record(txn, pool, overlay, reason)

    def apply_commits(self, scope: str, records: list[LogRecord]) -> tuple[int, dict[str, int]]:
        """Apply others' log records in sequence order per origin, in one transaction (on the writer).
        Returns how many were new, and per origin with a gap the sequence after which records are needed."""
        store = self.store
        applied, gaps = 0, {}
        with store.transaction() as txn:
            for record in records:
                origin, seq = record.origin, record.seq
                assert seq is not None, "only sequenced records are sent"
                have = store.vector(scope).get(origin, 0)
                if seq <= have or origin in gaps:
                    continue
                if seq != have + 1:
                    gaps[origin] = have
                    continue
                kept = store.append(record, scope)
                for version in record.versions():
                    self._resolve(txn, version, kept.id)
                store.set_version(scope, origin, seq)
                applied += 1
        return applied, gaps

    def commits_for(self, scope: str, have: Vector, limit: int = SNAPSHOT_PART) -> list[LogRecord] | None:
        """The log records a replica with vector `have` lacks, from this log (every origin), about `limit`
        changes' worth; None when the log cannot provide them (a full load is needed)."""
        out: list[LogRecord] = []
        changes = 0
        for origin, mine in self.store.vector(scope).items():
            after = have.get(origin, 0)
            if mine <= after:
                continue
            records = self.store.origin_commits(scope, origin, after, max(limit - changes, 1))
            if records is None:
                return None
            out += records
            changes += sum(len(r.changes) for r in records)
            if changes >= limit:
                break
        return out

    def versions(self, partitions: Iterable[str], buckets: set[int] | None = None) -> list[Version]:
        """Every version of the scope's objects (tombstones included), optionally of some buckets only."""
        versions = list(self.store.scope_versions(partitions))
        if buckets is not None:
            versions = [v for v in versions if bucket_of(*v.key) in buckets]
        return versions

    def apply_snapshot(self, scope: str, partitions: Iterable[str], versions: list[Version],
                       vector: Vector | None, replace: bool) -> None:
        """Merge a snapshot (resolution rule as for commits), or with `replace` make the scope exactly it
        (dropping this device's pending changes). `vector` is what the snapshot reflects, if whole."""
        store = self.store
        with store.transaction() as txn:
            if replace:
                keep = {v.key for v in versions}
                for version in store.scope_versions(partitions):
                    if version.key not in keep:
                        store.remove_version(*version.key)
                store.drop_pending(scope)
            if versions or replace:
                store.note_unlogged()
            for version in versions:  # versions of a snapshot come with no log record: record id 0
                if replace:
                    store.clock.observe(version.hlc)
                    store.write_version(version, 0)
                else:
                    self._resolve(txn, version, 0)
            for origin, seq in (vector or {}).items():
                if seq > store.vector(scope).get(origin, 0):
                    store.set_version(scope, origin, seq)

    def sequence_pending(self, scope: str) -> list[LogRecord]:
        """Give this device's pending log records of the scope their sequence numbers; returns them."""
        store = self.store
        with store.atomic():
            seq = store.vector(scope).get(store.device_id, 0)
            sequenced = []
            for record in store.pending(scope):
                seq += 1
                sequenced.append(store.sequence(record, seq))
            if sequenced:
                store.set_version(scope, store.device_id, seq)
        return sequenced
