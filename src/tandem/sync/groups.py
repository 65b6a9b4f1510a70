"""Device groups: the rules a group must keep, and changing groups in the domain's records."""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tandem.config.validation import validate
from tandem.errors import Conflict, Invalid, NotFound
from tandem.models import Partition
from tandem.models.cluster import DeviceGroup
from tandem.store import GLOBAL, Store
from tandem.trust.domain import Domain

INTERNAL_FIELDS = ("seed",)
"""Kept in a group's record, not shown: the member whose configuration seeds the group."""


class SyncRequest(BaseModel):
    """Sync the group from this member's configuration."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: str = Field(alias="from", min_length=1, max_length=63)


def present(group: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in group.items() if k not in INTERNAL_FIELDS}


def _check(domain: Domain, store: Store, group: DeviceGroup) -> None:
    trusted = {d["name"] for d in domain.devices()}
    for name in group.members:
        if name not in trusted:
            raise Invalid(f"members: {name} is not in the trust domain", target="members")
    for partition in group.partitions:
        if not store.exists(Partition.kind, GLOBAL, partition):
            raise Invalid(f"partitions: partition {partition!r} does not exist", target="partitions")
    for other in domain.groups():
        if other["name"] == group.name:
            continue
        shared = set(other["partitions"]) & set(group.partitions)
        if shared:
            raise Conflict(f"partition {sorted(shared)[0]} is already synced by device group {other['name']}",
                           target="partitions")
        if group.type == other["type"] == "sync-failover":
            both = set(other["members"]) & set(group.members)
            if both:
                raise Conflict(f"{sorted(both)[0]} is already in sync-failover group {other['name']}",
                               target="members")


def create(domain: Domain, store: Store, group: DeviceGroup) -> dict[str, Any]:
    if domain.group(group.name) is not None:
        raise Conflict(f"device group {group.name!r} already exists", target="name")
    _check(domain, store, group)
    me = domain.me["name"]
    seed_name = me if me in group.members else min(group.members, default=me)
    seed = domain.device_named(seed_name)
    record = group.model_dump() | {"seed": seed["id"] if seed else domain.device_id}
    domain.put_group(record)
    return present(record)


def update(domain: Domain, store: Store, name: str, patch: dict[str, Any]) -> dict[str, Any]:
    stored = get(domain, name)
    if "type" in patch and patch["type"] != stored["type"]:
        raise Invalid("type cannot be changed", target="type")
    if "name" in patch and patch["name"] != name:
        raise Invalid("name cannot be changed", target="name")
    group = validate(DeviceGroup, present(stored) | patch)
    _check(domain, store, group)
    record = group.model_dump() | {k: stored[k] for k in INTERNAL_FIELDS if k in stored}
    domain.put_group(record)
    for traffic_group in domain.traffic_groups():  # a device that leaves the group leaves its HA orders
        if traffic_group["device_group"] == name and set(traffic_group["ha_order"]) - set(group.members):
            domain.put_traffic_group(dict(traffic_group, ha_order=[d for d in traffic_group["ha_order"]
                                                                   if d in group.members]))
    return present(record)


def get(domain: Domain, name: str) -> dict[str, Any]:
    group = domain.group(name)
    if group is None:
        raise NotFound(f"device group {name!r} does not exist", target=name)
    return group


def delete(domain: Domain, name: str) -> None:
    """Delete a group and the traffic groups that fail over within it."""
    get(domain, name)
    for traffic_group in domain.traffic_groups():
        if traffic_group["device_group"] == name:
            domain.delete_traffic_group(traffic_group["name"])
    domain.delete_group(name)
