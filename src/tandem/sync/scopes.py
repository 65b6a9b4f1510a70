"""Which changes replicate where: the device groups this device belongs to, seen as scopes."""

from tandem.models import Partition
from tandem.models.cluster import GroupRecord
from tandem.store import GLOBAL, ScopeRule, Store
from tandem.trust.domain import Domain

RESTORED = "restored"
"""The store's metadata key a restore sets (`tandem.backups.contents`), cleared once every scope is released."""
LOCAL = ScopeRule(sequenced=False)
"""Changes that stay on this device carry no sequence number nor version vector: those of a scope
mean something only within it, and the object may later join a group's scope."""


class Scopes:
    """The replication scopes of this device: one per device group it is a member of, named after it."""

    def __init__(self, store: Store, domain: Domain) -> None:
        self._store = store
        self._domain = domain
        self._by_partition: dict[str, GroupRecord] = {}
        self.held: set[str] = set()
        """The scopes in which this device, restored from a backup, numbers no change of its own yet: its members
        may hold later commits of it, made before it was rebuilt, whose numbers a new change would take again.
        Changes made meanwhile wait as pending ones; `release` when every member has sent it what it has. A group
        that becomes this device's while it is restored (its restored domain may be older) is held too."""
        self._released: set[str] = set()
        self.refresh()

    @property
    def restoring(self) -> bool:
        """Whether this device was restored from a backup and has not yet caught up (`end_restore`)."""
        return self._store.meta(RESTORED) is not None

    def end_restore(self) -> None:
        """Nothing is held and every peer has the same trust domain: no group of the restored domain is to come."""
        self._store.set_meta(RESTORED, None)

    def refresh(self) -> None:
        """Follow the domain's groups; mark groups this device newly belongs to as awaiting initial sync."""
        me = self._domain.me.name
        restored = self._store.meta(RESTORED) is not None
        by_partition = {}
        for group in self._domain.groups():
            synced_key = f"synced:{group.name}"
            if me in group.members:
                if restored and group.name not in self._released:
                    self.held.add(group.name)
                for partition in group.partitions:
                    by_partition[partition] = group
                if self._store.meta(synced_key) is None:
                    self._store.set_meta(synced_key, "1" if group.seed == self._domain.device_id else "0")
            elif self._store.meta(synced_key) is not None:
                self._store.set_meta(synced_key, None)
                self._store.drop_scope_versions(group.name)
        self._by_partition = by_partition  # one assignment: the writer thread reads it (`rule`)

    def rule(self, kind: str, partition: str, name: str) -> ScopeRule:
        """The store's rule: objects of a group's partitions replicate in the group's scope."""
        if partition == GLOBAL and kind != Partition.kind:
            return LOCAL
        group = self._by_partition.get(name if kind == Partition.kind else partition)
        if group is None:
            return LOCAL
        return ScopeRule(group.name, sequenced=group.auto_sync and group.name not in self.held)

    def release(self, scope: str) -> None:
        """This device has all its own commits of `scope` that its members have: it numbers its changes again."""
        self.held.discard(scope)
        self._released.add(scope)

    def mine(self) -> list[GroupRecord]:
        """The groups this device is a member of."""
        return [g for g in self._domain.groups() if self._domain.me.name in g.members]

    def group(self, scope: str) -> GroupRecord | None:
        """The group of this name if this device is a member of it."""
        group = self._domain.group(scope)
        return group if group is not None and self._domain.me.name in group.members else None

    def synced(self, scope: str) -> bool:
        return self._store.meta(f"synced:{scope}") == "1"

    def mark_synced(self, scope: str) -> None:
        self._store.set_meta(f"synced:{scope}", "1")
