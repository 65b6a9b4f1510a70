"""Device groups: the rules a group must keep, and changing groups in the domain's records."""

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tandem.config.validation import validate
from tandem.errors import Conflict, Invalid, NotFound
from tandem.models import Partition
from tandem.models.cluster import SYNC_FAILOVER, DeviceGroup, GroupRecord, GroupStatus
from tandem.store import GLOBAL, Store
from tandem.sync.engine import SyncEngine
from tandem.sync.status import group_status
from tandem.trust.domain import Domain


class SyncRequest(BaseModel):
    """Sync the group from this member's configuration."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: str = Field(alias="from", min_length=1, max_length=63)


def _check(domain: Domain, store: Store, group: DeviceGroup) -> None:
    trusted = {d.name for d in domain.devices()}
    for name in group.members:
        if name not in trusted:
            raise Invalid(f"members: {name} is not in the trust domain", target="members")
    for partition in group.partitions:
        if not store.exists(Partition.kind, GLOBAL, partition):
            raise Invalid(f"partitions: partition {partition!r} does not exist", target="partitions")
    for other in domain.groups():
        if other.name == group.name:
            continue
        shared = set(other.partitions) & set(group.partitions)
        if shared:
            raise Conflict(f"partition {sorted(shared)[0]} is already synced by device group {other.name}",
                           target="partitions")
        if group.type == other.type == SYNC_FAILOVER:
            both = set(other.members) & set(group.members)
            if both:
                raise Conflict(f"{sorted(both)[0]} is already in sync-failover group {other.name}",
                               target="members")


class DeviceGroups:
    """The device groups of the trust domain: changing them (every member takes the change), their sync
    status as this device sees it, and syncing one."""

    def __init__(self, domain: Domain, store: Store, sync: SyncEngine) -> None:
        self._domain = domain
        self._store = store
        self._sync = sync

    def all(self) -> list[GroupRecord]:
        return self._domain.groups()

    def get(self, name: str) -> GroupRecord:
        group = self._domain.group(name)
        if group is None:
            raise NotFound(f"device group {name!r} does not exist", target=name)
        return group

    def create(self, group: DeviceGroup) -> GroupRecord:
        domain = self._domain
        if domain.group(group.name) is not None:
            raise Conflict(f"device group {group.name!r} already exists", target="name")
        _check(domain, self._store, group)
        me = domain.me.name
        seed = domain.device_named(me if me in group.members else min(group.members, default=me))
        record = GroupRecord(**group.model_dump(), seed=seed.id if seed else domain.device_id)
        domain.put_group(record)
        return record

    def update(self, name: str, patch: dict[str, Any]) -> GroupRecord:
        domain = self._domain
        stored = self.get(name)
        if "type" in patch and patch["type"] != stored.type:
            raise Invalid("type cannot be changed", target="type")
        if "name" in patch and patch["name"] != name:
            raise Invalid("name cannot be changed", target="name")
        group = validate(DeviceGroup, stored.public().model_dump() | patch)
        _check(domain, self._store, group)
        record = GroupRecord(**group.model_dump(), seed=stored.seed)
        domain.put_group(record)
        for traffic_group in domain.traffic_groups():  # a device that leaves the group leaves its HA orders
            if traffic_group.device_group == name and set(traffic_group.ha_order) - set(group.members):
                domain.put_traffic_group(traffic_group.model_copy(
                    update={"ha_order": [d for d in traffic_group.ha_order if d in group.members]}))
        return record

    def delete(self, name: str) -> None:
        """Delete a group and the traffic groups that fail over within it."""
        self.get(name)
        for traffic_group in self._domain.traffic_groups():
            if traffic_group.device_group == name:
                self._domain.delete_traffic_group(traffic_group.name)
        self._domain.delete_group(name)

    def add_partition(self, partition: str) -> None:
        """Add `partition` to the device group through which this device syncs (its sync-failover group
        first), if it has one."""
        me = self._domain.me.name
        mine = sorted((g for g in self._domain.groups() if me in g.members), key=lambda g: g.type != SYNC_FAILOVER)
        if mine and partition not in mine[0].partitions:
            self.update(mine[0].name, {"partitions": [*mine[0].partitions, partition]})

    def status(self, name: str) -> GroupStatus:
        """The group's sync status as this device sees it (`tandem.sync.status`)."""
        return group_status(self._sync, self.get(name))

    def sync_work(self, name: str, source: str) -> Callable[[], Awaitable[dict[str, Any]]]:
        """What makes member `source`'s configuration the group's (a job runs it); Conflict at once if
        `source` is not a member."""
        if source not in self.get(name).members:
            raise Conflict(f"{source} is not a member of device group {name}", target="from")
        return lambda: self._sync.sync_to_group(name, source)

    async def clear_conflicts(self, name: str) -> int:
        """Clear the group's conflict records, on every member."""
        self.get(name)
        return await self._sync.clear_conflicts(name)
