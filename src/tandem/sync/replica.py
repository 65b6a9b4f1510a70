"""One device's replica of a scope: applying others' commits and snapshots, and what to send them.

The resolution rule: an object's state is the version with the greatest (stamp, origin). A version
that was written without having seen the current one, while the current one had not seen it
either (their writers' version vectors are concurrent), is a conflict: the loser is recorded. So is
a pool member's change that a concurrent delete, member-list replacement or new pool hides (a pool
and its members are one unit: `tandem.config.units`). Records are written as this device's own
commits in the same transaction, so they replicate like any change (`conflicts`).
"""

from collections.abc import Iterable
from typing import Any

from tandem.config import units
from tandem.store import Store, Transaction, Vector
from tandem.store.database import change_version
from tandem.store.digest import bucket_of
from tandem.sync import conflicts

SNAPSHOT_PART = 2000
"""Versions per snapshot message (and changes per message of log records, a record being never split)."""


def _key(version: dict[str, Any]) -> tuple[str, str, str]:
    return version["kind"], version["partition"], version["name"]


def _stamp(version: dict[str, Any]) -> tuple[int, str]:
    return version["hlc"], version["origin"]


def _has_seen(writer: dict[str, Any], other: dict[str, Any]) -> bool:
    """Whether the writer of `writer` had applied `other` when it wrote. A version without a sequence
    number (written before its partition joined the group) is judged by its stamp alone."""
    if other["seq"] is None:
        return _stamp(writer) > _stamp(other)
    return writer["vv"].get(other["origin"], 0) >= other["seq"]


class Replica:
    """Replication operations on this device's store, for one scope at a time."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def _resolve(self, txn: Transaction, incoming: dict[str, Any], commit_id: int) -> None:
        """Make `incoming` the object's current version if it wins; record what concurrent writes lose."""
        store = self.store
        store.clock.observe(incoming["hlc"])
        current = store.version(*_key(incoming))
        if current is not None and (_stamp(current) == _stamp(incoming) or _has_seen(current, incoming)):
            return
        newer = current is None or _stamp(incoming) > _stamp(current)
        judged = incoming["kind"] in conflicts.JUDGED_KINDS
        if judged and current is not None and not _has_seen(incoming, current):
            winner, loser = (incoming, current) if newer else (current, incoming)
            conflicts.record(txn, winner, loser, "concurrent")
        if not newer:
            return
        if judged and incoming["kind"] == units.POOLS:
            self._rejudge_overlays(txn, current, incoming)
        store.write_version(incoming, commit_id)
        if judged and units.is_overlay(incoming["kind"]):
            self._judge_overlay(txn, incoming)

    def _rejudge_overlays(self, txn: Transaction, old: dict[str, Any] | None, new: dict[str, Any]) -> None:
        """Pool version `new` replaces `old`: an overlay that counted and no longer does, neither side
        having seen the other, lost to `new` (recorded); one that did not count and does again (the
        delete or replacement that hid it lost in turn) lost nothing (its record, if any, withdrawn)."""
        prefixes = {units.overlays_of(old), units.overlays_of(new)} - {None}
        for prefix in prefixes:
            for overlay in self.store.versions(units.OVERLAYS, new["partition"], prefix):
                before, after = units.overlay_alive(overlay, old), units.overlay_alive(overlay, new)
                if before and not after and not _has_seen(new, overlay) and not _has_seen(overlay, new):
                    conflicts.record(txn, new, overlay, units.hiding_reason(overlay, new))
                elif after and not before:
                    conflicts.withdraw(txn, overlay)

    def _judge_overlay(self, txn: Transaction, overlay: dict[str, Any]) -> None:
        """An overlay that arrives hidden by the pool's current version, neither having seen the other,
        lost to it; unless it belongs to an incarnation of the pool not known here yet (its own pool
        version then decides, and records the whole pool if it loses)."""
        pool = self.store.version(*units.pool_key(overlay))
        if pool is None or units.overlay_alive(overlay, pool) or _has_seen(pool, overlay) or _has_seen(overlay, pool):
            return
        reason = units.hiding_reason(overlay, pool)
        if reason == "recreated" and not units.older_incarnation(overlay, pool):
            return
        conflicts.record(txn, pool, overlay, reason)

    def apply_commits(self, scope: str, records: list[dict[str, Any]]) -> tuple[int, dict[str, int]]:
        """Apply others' log records in sequence order per origin, in one transaction (on the writer).
        Returns how many were new, and per origin with a gap the sequence after which records are needed."""
        store = self.store
        applied, gaps = 0, {}
        with store.transaction() as txn:
            for record in records:
                origin, seq = record["origin"], record["seq"]
                have = store.vector(scope).get(origin, 0)
                if seq <= have or origin in gaps:
                    continue
                if seq != have + 1:
                    gaps[origin] = have
                    continue
                record_id = store.append(dict(record, scope=scope))
                for change in record["changes"]:
                    self._resolve(txn, change_version(change, origin, seq, record["vv"]), record_id)
                store.set_version(scope, origin, seq)
                applied += 1
        return applied, gaps

    def commits_for(self, scope: str, have: Vector, limit: int = SNAPSHOT_PART) -> list[dict[str, Any]] | None:
        """The log records a replica with vector `have` lacks, from this log (every origin), about `limit`
        changes' worth; None when the log cannot provide them (a full load is needed)."""
        out: list[dict[str, Any]] = []
        changes = 0
        for origin, mine in self.store.vector(scope).items():
            after = have.get(origin, 0)
            if mine <= after:
                continue
            records = self.store.origin_commits(scope, origin, after, max(limit - changes, 1))
            if records is None:
                return None
            out += records
            changes += sum(len(r["changes"]) for r in records)
            if changes >= limit:
                break
        return out

    def versions(self, partitions: Iterable[str], buckets: set[int] | None = None) -> list[dict[str, Any]]:
        """Every version of the scope's objects (tombstones included), optionally of some buckets only."""
        versions = list(self.store.scope_versions(partitions))
        if buckets is not None:
            versions = [v for v in versions if bucket_of(*_key(v)) in buckets]
        return versions

    def apply_snapshot(self, scope: str, partitions: Iterable[str], versions: list[dict[str, Any]],
                       vector: Vector | None, replace: bool) -> None:
        """Merge a snapshot (resolution rule as for commits), or with `replace` make the scope exactly it
        (dropping this device's pending changes). `vector` is what the snapshot reflects, if whole."""
        store = self.store
        with store.transaction() as txn:
            if replace:
                keep = {_key(v) for v in versions}
                for version in store.scope_versions(partitions):
                    if _key(version) not in keep:
                        store.remove_version(*_key(version))
                store.drop_pending(scope)
            if versions or replace:
                store.note_unlogged()
            for version in versions:  # versions of a snapshot come with no log record: record id 0
                if replace:
                    store.clock.observe(version["hlc"])
                    store.write_version(version, 0)
                else:
                    self._resolve(txn, version, 0)
            for origin, seq in (vector or {}).items():
                if seq > store.vector(scope).get(origin, 0):
                    store.set_version(scope, origin, seq)

    def sequence_pending(self, scope: str) -> list[dict[str, Any]]:
        """Give this device's pending log records of the scope their sequence numbers; returns them."""
        store = self.store
        with store.atomic():
            pending = store.pending(scope)
            seq = store.vector(scope).get(store.device_id, 0)
            for record in pending:
                seq += 1
                store.sequence(record, seq)
            if pending:
                store.set_version(scope, store.device_id, seq)
        return pending

