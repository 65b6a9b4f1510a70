"""One device's replica of a scope: applying others' commits and snapshots, and what to send them.

The resolution rule: an object's state is the version with the greatest (stamp, origin). A version
that was written without having seen the current one, while the current one had not seen it
either (their writers' version vectors are concurrent), is a conflict: the loser is recorded.
"""

import hashlib
from collections.abc import Iterable
from typing import Any

from tandem.store import Store, Vector

BUCKETS = 64
SNAPSHOT_PART = 2000
"""Versions per snapshot message."""


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

    def _merge(self, scope: str, incoming: dict[str, Any]) -> bool:
        """Resolve `incoming` against the current version; True if it became the current one."""
        store = self.store
        store.clock.observe(incoming["hlc"])
        current = store.version(*_key(incoming))
        if current is None:
            return True
        if _stamp(current) == _stamp(incoming) or _has_seen(current, incoming):
            return False
        newer = _stamp(incoming) > _stamp(current)
        if not _has_seen(incoming, current):
            winner, loser = (incoming, current) if newer else (current, incoming)
            store.add_conflict(scope, winner, loser)
        return newer

    def apply_commits(self, scope: str, commits: list[dict[str, Any]]) -> tuple[int, dict[str, int]]:
        """Apply commits of others in sequence order per origin, in one transaction.
        Returns how many were new, and per origin with a gap the sequence after which commits are needed."""
        store = self.store
        vector = store.vector(scope)
        applied, gaps = 0, {}
        with store.atomic():
            for commit in commits:
                origin, seq = commit["origin"], commit["seq"]
                have = vector.get(origin, 0)
                if seq <= have or origin in gaps:
                    continue
                if seq != have + 1:
                    gaps[origin] = have
                    continue
                commit = dict(commit, scope=scope, txn=None)
                commit_id = store.append(commit)
                if self._merge(scope, commit):
                    store.write_version(commit, commit_id)
                store.set_version(scope, origin, seq)
                applied += 1
        return applied, gaps

    def commits_for(self, scope: str, have: Vector, limit: int = SNAPSHOT_PART) -> list[dict[str, Any]] | None:
        """The commits a replica with vector `have` lacks, from this log (every origin); None when the
        log cannot provide them (a full load is needed)."""
        out: list[dict[str, Any]] = []
        for origin, mine in self.store.vector(scope).items():
            after = have.get(origin, 0)
            if mine <= after:
                continue
            commits = self.store.origin_commits(scope, origin, after, limit - len(out))
            if commits is None:
                return None
            out += commits
            if len(out) >= limit:
                break
        return out

    def versions(self, partitions: Iterable[str], buckets: set[int] | None = None) -> list[dict[str, Any]]:
        """Every version of the scope's objects (tombstones included), optionally of some buckets only."""
        versions = list(self.store.scope_versions(partitions))
        if buckets is not None:
            versions = [v for v in versions if bucket_of(v) in buckets]
        return versions

    def apply_snapshot(self, scope: str, partitions: Iterable[str], versions: list[dict[str, Any]],
                       vector: Vector | None, replace: bool) -> None:
        """Merge a snapshot (resolution rule as for commits), or with `replace` make the scope exactly it
        (dropping this device's pending changes). `vector` is what the snapshot reflects, if whole."""
        store = self.store
        with store.atomic():
            if replace:
                keep = {_key(v) for v in versions}
                for version in store.scope_versions(partitions):
                    if _key(version) not in keep:
                        store.remove_version(*_key(version))
                store.drop_pending(scope)
            commit_id = store.last_commit_id()
            for version in versions:
                store.clock.observe(version["hlc"])
                if replace or self._merge(scope, version):
                    store.write_version(version, commit_id)
            for origin, seq in (vector or {}).items():
                if seq > store.vector(scope).get(origin, 0):
                    store.set_version(scope, origin, seq)

    def sequence_pending(self, scope: str) -> list[dict[str, Any]]:
        """Give this device's pending changes of the scope their sequence numbers; returns them."""
        store = self.store
        with store.atomic():
            pending = store.pending(scope)
            seq = store.vector(scope).get(store.device_id, 0)
            for commit in pending:
                seq += 1
                store.sequence(commit, seq)
            if pending:
                store.set_version(scope, store.device_id, seq)
        return pending

    def digest(self, partitions: Iterable[str]) -> list[int]:
        """Per bucket, the XOR of the hashes of its object versions: equal lists, equal replicas."""
        buckets = [0] * BUCKETS
        for version in self.store.scope_versions(partitions):
            buckets[bucket_of(version)] ^= _version_hash(version)
        return buckets


def bucket_of(version: dict[str, Any]) -> int:
    key = "\0".join(_key(version)).encode()
    return hashlib.blake2b(key, digest_size=2).digest()[0] % BUCKETS


def version_hash(version: dict[str, Any] | None) -> int:
    """The hash of a version in a digest bucket (0 for no version)."""
    if version is None:
        return 0
    return _version_hash(version)


def _version_hash(version: dict[str, Any]) -> int:
    text = "\0".join((*_key(version), str(version["hlc"]), version["origin"], str(int(version["deleted"]))))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")
