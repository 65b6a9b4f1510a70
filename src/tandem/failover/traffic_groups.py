"""Traffic groups: the rules a traffic group must keep, and changing them in the domain's records."""

from typing import Any

from tandem.config.validation import validate
from tandem.errors import Conflict, Invalid, NotFound
from tandem.models.cluster import TrafficGroup
from tandem.trust.domain import Domain


def _check(domain: Domain, group: TrafficGroup) -> None:
    device_group = domain.group(group.device_group)
    if device_group is None:
        raise Invalid(f"device_group: device group {group.device_group!r} does not exist", target="device_group")
    if device_group["type"] != "sync-failover":
        raise Invalid("device_group: traffic groups fail over within a sync-failover group", target="device_group")
    for name in group.ha_order:
        if name not in device_group["members"]:
            raise Invalid(f"ha_order: {name} is not a member of {group.device_group}", target="ha_order")
    for other in domain.traffic_groups():
        shared = set(other["addresses"]) & set(group.addresses) if other["name"] != group.name else set()
        if shared:
            raise Conflict(f"address {sorted(shared)[0]} already floats with traffic group {other['name']}",
                           target="addresses")


def get(domain: Domain, name: str) -> dict[str, Any]:
    group = domain.traffic_group(name)
    if group is None:
        raise NotFound(f"traffic group {name!r} does not exist", target=name)
    return group


def create(domain: Domain, group: TrafficGroup) -> dict[str, Any]:
    if domain.traffic_group(group.name) is not None:
        raise Conflict(f"traffic group {group.name!r} already exists", target="name")
    _check(domain, group)
    record = group.model_dump()
    domain.put_traffic_group(record)
    return record


def update(domain: Domain, name: str, patch: dict[str, Any]) -> dict[str, Any]:
    stored = get(domain, name)
    if "name" in patch and patch["name"] != name:
        raise Invalid("name cannot be changed", target="name")
    group = validate(TrafficGroup, stored | patch)
    _check(domain, group)
    record = group.model_dump()
    domain.put_traffic_group(record)
    return record


def delete(domain: Domain, name: str) -> None:
    get(domain, name)
    domain.delete_traffic_group(name)
