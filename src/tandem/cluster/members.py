"""The cluster as its members see it (LXD style): each trusted device's status, and evacuating one.

A member's status comes from what this device hears now: the heartbeats for the members of its
own sync-failover group, the peer channel for the others. An evacuated member (a record of the
trust domain, so every member sees it) takes no traffic group: its failover service treats
itself as offline, and the other members take its traffic groups by the failover rule.
"""

import asyncio
import time
from dataclasses import dataclass
from typing import get_args

from tandem.errors import NotFound
from tandem.failover.rule import ACTIVE
from tandem.failover.service import FailoverService
from tandem.models.cluster import (
    SYNC_FAILOVER,
    ClusterMemberView,
    ClusterView,
    GroupRecord,
    MemberConfigField,
    MemberStatus,
    TrustedDevice,
    TrustRequest,
)
from tandem.sync.engine import SyncEngine
from tandem.trust.domain import Domain

ONLINE, OFFLINE, EVACUATED = get_args(MemberStatus)
DATABASE, FAILOVER = "database", "failover"
"""Roles: the member holds a full replica (it is in a device group); it is in a sync-failover group;
and `active` (for at least one traffic group, as this device hears)."""
FIELDS = list(ClusterMemberView.model_fields)
HEAR_POLL, HEAR_WAIT = 0.01, 2.0
"""After evacuating or restoring a member this device hears: how often, and at most how long, to listen for
its heartbeats to take the change before answering."""

_JOIN_FIELDS = {
    "url": "The new member's management URL (https://host:port)",
    "username": "An admin user of the new member (used once, to add it)",
    "password": "That user's password (used once, never stored)",
    "fingerprint": "Optional: the SHA-256 fingerprint the new member's certificate must have",
}
MEMBER_CONFIG = [MemberConfigField(entity="trust-request", name="/api/trust/devices", key=key,
                                    description=_JOIN_FIELDS[key]) for key in TrustRequest.model_fields]
"""What a new member must supply: the body of `POST /api/trust/devices`, posted to any member."""


@dataclass(frozen=True)
class _Seen:
    """What this device knows now of one member."""

    down: str
    """Why it is taken as down ('' when it is up)."""
    offline: bool
    """It takes no traffic group (offline for failover, or evacuated), as far as this device knows."""
    evacuated: bool
    active: bool

    @property
    def can_serve(self) -> bool:
        return not (self.down or self.offline or self.evacuated)


class ClusterMembers:
    """The membership view of this device's cluster, and evacuating members."""

    def __init__(self, domain: Domain, failover: FailoverService, sync: SyncEngine) -> None:
        self._domain = domain
        self._failover = failover
        self._sync = sync

    def cluster(self) -> ClusterView:
        """This device's cluster."""
        domain = self._domain
        return ClusterView(server_name=domain.me.name, enabled=bool(domain.peers()), member_config=MEMBER_CONFIG,
                           cluster_name=domain.cluster_name, uuid=domain.domain_id)

    def rename(self, name: str) -> None:
        """Name the cluster (every member takes the name)."""
        self._domain.rename_cluster(name)

    def views(self) -> list[ClusterMemberView]:
        """Every member (the trusted devices, this one included), by name, as this device sees them now."""
        seen = self._seen()
        return [self._view(record, seen) for record in self._domain.devices()]

    def view(self, name: str) -> ClusterMemberView:
        """One member as this device sees it now; NotFound if no trusted device has that name."""
        return self._view(self._member(name), self._seen())

    async def evacuate(self, name: str) -> ClusterMemberView:
        """Hand all of the member's traffic groups to the other members and keep it from taking any (allowed
        even when nobody can take them: its view says so); its view."""
        return await self._set_evacuated(name, True)

    async def restore(self, name: str) -> ClusterMemberView:
        """Undo an evacuation: the member can be chosen for traffic groups again; its view."""
        return await self._set_evacuated(name, False)

    async def _set_evacuated(self, name: str, evacuated: bool) -> ClusterMemberView:
        record = self._member(name)
        if self._domain.evacuated(record.id) != evacuated:
            self._domain.set_evacuated(record.id, evacuated)
            await self._until_heard(record, offline=evacuated)
        return self.view(name)

    async def _until_heard(self, record: TrustedDevice, offline: bool) -> None:
        """Until the member's heartbeats say whether it is `offline` as expected (it took the change), so that
        its view is up to date; at most HEAR_WAIT (less when the member falls silent), and only for a member this device
        hears."""
        failover = self._failover
        group = failover.device_group()
        if record.id == self._domain.device_id or group is None or record.name not in group.members:
            return
        deadline = time.monotonic() + HEAR_WAIT
        while time.monotonic() < deadline:
            silent = failover.last_heard(record.id)
            if (silent is None or silent >= failover.silence_allowed(record.id)
                    or failover.heard_offline(record.id) == offline):
                return
            await asyncio.sleep(HEAR_POLL)

    def _member(self, name: str) -> TrustedDevice:
        record = self._domain.device_named(name)
        if record is None:
            raise NotFound(f"no cluster member {name!r}", target=name)
        return record

    def _seen(self) -> dict[str, _Seen]:
        """What this device knows now of every member, by device id."""
        domain, failover = self._domain, self._failover
        group = failover.device_group()
        actives = {m.device_id for t in failover.traffic_groups() for m in failover.members(t)
                   if m.alive and m.state == ACTIVE}
        seen = {}
        for record in domain.devices():
            device_id = record.id
            evacuated, active = domain.evacuated(device_id), device_id in actives
            if device_id == domain.device_id:
                seen[device_id] = _Seen("", failover.out_of_service, evacuated, active)
            elif group is not None and record.name in group.members:
                silent = failover.last_heard(device_id)
                down = ("no heartbeat heard from it" if silent is None else
                        f"no heartbeat for {silent:.1f} s" if silent >= failover.silence_allowed(device_id) else "")
                seen[device_id] = _Seen(down, not down and failover.heard_offline(device_id), evacuated, active)
            else:
                link = self._sync.peers.get(device_id)
                seen[device_id] = _Seen(link.message if link else "no link", False, evacuated, active)
        return seen

    def _view(self, record: TrustedDevice, seen: dict[str, _Seen]) -> ClusterMemberView:
        name, me = record.name, seen[record.id]
        groups = [g for g in self._domain.groups() if name in g.members]
        failover_group = next((g for g in groups if g.type == SYNC_FAILOVER), None)
        roles = [role for role, has in ((DATABASE, bool(groups)), (FAILOVER, failover_group is not None),
                                        (ACTIVE, me.active)) if has]
        if me.evacuated:
            status, message = EVACUATED, self._evacuation(name, failover_group, seen)
            message += f" ({me.down})" if me.down else ""
        elif me.down:
            status, message = OFFLINE, me.down
        elif me.offline:
            status, message = ONLINE, "offline for failover: it takes no traffic group"
        else:
            status, message = ONLINE, "Fully operational"
        return ClusterMemberView(server_name=name, url=record.management_url, database=bool(groups), status=status,
                                 message=message, roles=roles)

    def _evacuation(self, name: str, group: GroupRecord | None, seen: dict[str, _Seen]) -> str:
        domain = self._domain
        if group is None or not any(t.device_group == group.name for t in domain.traffic_groups()):
            return "evacuated: it has no traffic group to hand over"
        others = [domain.device_named(n) for n in group.members if n != name]
        if any(other and seen[other.id].can_serve for other in others):
            return "evacuated: its traffic groups are served by others"
        return "evacuated: nobody can take its traffic groups"
