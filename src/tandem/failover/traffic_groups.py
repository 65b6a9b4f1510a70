"""Traffic groups: the rules a traffic group must keep, and changing them in the domain's records."""

from collections.abc import Callable
from typing import Any

from tandem.config.validation import validate
from tandem.errors import Conflict, Invalid, NotFound
from tandem.models.cluster import SYNC_FAILOVER, TrafficGroup
from tandem.trust.domain import NEW_TRACKERS, Domain


def _check(domain: Domain, group: TrafficGroup, older: list[str]) -> None:
    device_group = domain.group(group.device_group)
    if device_group is None:
        raise Invalid(f"device_group: device group {group.device_group!r} does not exist", target="device_group")
    if device_group.type != SYNC_FAILOVER:
        raise Invalid("device_group: traffic groups fail over within a sync-failover group", target="device_group")
    if group.quorum and len(device_group.members) < 3:
        raise Invalid("quorum: a majority needs a device group of three or more devices",
                      target="quorum")
    new = sorted({t.type for t in group.trackers} & set(NEW_TRACKERS))
    if new and older:
        raise Conflict(f"trackers: {older[0]} runs a release that knows no {new[0]} trackers (peer protocol 1): "
                       "upgrade every member first", target="trackers")
    for name in group.ha_order:
        if name not in device_group.members:
            raise Invalid(f"ha_order: {name} is not a member of {group.device_group}", target="ha_order")
    for other in domain.traffic_groups():
        shared = set(other.addresses) & set(group.addresses) if other.name != group.name else set()
        if shared:
            raise Conflict(f"address {sorted(shared)[0]} already floats with traffic group {other.name}",
                           target="addresses")


class TrafficGroups:
    """The traffic groups of the trust domain (every member takes a change)."""

    def __init__(self, domain: Domain, older: Callable[[], list[str]] = list) -> None:
        """`older`: the members connected now that speak a peer protocol before `USERS_SINCE` (the release
        before): a traffic group may not use what they cannot read."""
        self._domain = domain
        self._older = older

    def all(self) -> list[TrafficGroup]:
        return self._domain.traffic_groups()

    def get(self, name: str) -> TrafficGroup:
        group = self._domain.traffic_group(name)
        if group is None:
            raise NotFound(f"traffic group {name!r} does not exist", target=name)
        return group

    def create(self, group: TrafficGroup) -> TrafficGroup:
        if self._domain.traffic_group(group.name) is not None:
            raise Conflict(f"traffic group {group.name!r} already exists", target="name")
        _check(self._domain, group, self._older())
        self._domain.put_traffic_group(group)
        return group

    def update(self, name: str, patch: dict[str, Any]) -> TrafficGroup:
        stored = self.get(name)
        if "name" in patch and patch["name"] != name:
            raise Invalid("name cannot be changed", target="name")
        group = validate(TrafficGroup, stored.model_dump() | patch)
        _check(self._domain, group, self._older())
        self._domain.put_traffic_group(group)
        return group

    def delete(self, name: str) -> None:
        self.get(name)
        self._domain.delete_traffic_group(name)
