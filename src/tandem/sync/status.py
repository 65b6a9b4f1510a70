"""Sync status of a device group as this device sees it."""

from tandem.config.integrity import violations
from tandem.models.cluster import (
    AWAITING_INITIAL_SYNC,
    CHANGES_PENDING,
    DISCONNECTED,
    IN_SYNC,
    NOT_ALL_SYNCED,
    GroupRecord,
    GroupStatus,
    MemberSyncStatus,
    SyncStatus,
)
from tandem.sync import conflicts
from tandem.sync.engine import SyncEngine
from tandem.sync.messages import ScopeStatus

GROUP_ORDER = (DISCONNECTED, AWAITING_INITIAL_SYNC, CHANGES_PENDING, NOT_ALL_SYNCED)
"""The worst first: a group's status is the first of these any member has, else In Sync."""


def _member_status(scope_status: ScopeStatus | None, mine: ScopeStatus, connected: bool) -> SyncStatus:
    if not connected or scope_status is None:
        return DISCONNECTED
    if not scope_status.synced:
        return AWAITING_INITIAL_SYNC
    if scope_status.pending:
        return CHANGES_PENDING
    if scope_status.vv != mine.vv or scope_status.buckets != mine.buckets:
        return NOT_ALL_SYNCED
    return IN_SYNC


def group_status(engine: SyncEngine, group: GroupRecord) -> GroupStatus:
    """The group's status, each member's (with the age in seconds of the last status it sent here: how fresh
    the verdict is), the last commit each member has from each origin, and the conflicts: the replicated
    records of lost concurrent writes, then the rules the merged configuration breaks. The body of
    `GET /api/device-groups/{name}/status`."""
    scope = group.name
    domain = engine.domain
    names = {d.id: d.name for d in domain.devices()}
    me = domain.me.name
    mine = engine.scope_status(scope) if me in group.members else None
    members = []
    for name in group.members:
        device = domain.device_named(name)
        if device is None:
            members.append(MemberSyncStatus(name=name, status=DISCONNECTED, connected=False, pending_changes=0,
                                            last_commit={}, last_exchange=None, message="not in the trust domain"))
            continue
        if name == me:
            status, connected, age = mine, True, 0.0
            message = ("restored from a backup: its changes wait until every member has sent what it has of this"
                       " device's commits" if scope in engine.scopes.held else "")
        else:
            view = engine.peers.get(device.id)
            connected = view is not None and view.connected
            status = view.status.get(scope) if view is not None else None
            message = view.message if view is not None else "no link"
            seconds = view.status_age if view is not None else None
            age = round(seconds, 3) if seconds is not None else None
        state = DISCONNECTED if mine is None else _member_status(status, mine, connected)
        vector = status.vv if status else {}
        members.append(MemberSyncStatus(
            name=name, status=state, connected=connected, pending_changes=status.pending if status else 0,
            last_commit={names.get(origin, origin): seq for origin, seq in sorted(vector.items())},
            last_exchange=age, message=message))
    states = {m.status for m in members}
    overall = next((s for s in GROUP_ORDER if s in states), IN_SYNC)
    found = [*conflicts.views(engine.store, group.partitions, names),
             *(violation.view()
               for violation in violations(engine.store, group.partitions))]
    return GroupStatus(name=scope, type=group.type, status=overall, members=members, conflicts=found)
