"""Sync status of a device group as this device sees it."""

from datetime import UTC, datetime
from typing import Any

from tandem.sync.engine import SyncEngine

IN_SYNC, PENDING, AWAITING = "In Sync", "Changes Pending", "Awaiting Initial Sync"
NOT_ALL, DISCONNECTED = "Not All Devices Synced", "Disconnected"
GROUP_ORDER = (DISCONNECTED, AWAITING, PENDING, NOT_ALL)


def _member_status(scope_status: dict[str, Any] | None, mine: dict[str, Any], connected: bool) -> str:
    if not connected or scope_status is None:
        return DISCONNECTED
    if not scope_status["synced"]:
        return AWAITING
    if scope_status["pending"]:
        return PENDING
    if scope_status["vv"] != mine["vv"] or scope_status["buckets"] != mine["buckets"]:
        return NOT_ALL
    return IN_SYNC


def group_status(engine: SyncEngine, group: dict[str, Any]) -> dict[str, Any]:
    """The group's status, each member's, the last commit each member has from each origin, the conflicts."""
    scope = group["name"]
    domain = engine.domain
    names = {d["id"]: d["name"] for d in domain.devices()}
    me = domain.me["name"]
    in_group = me in group["members"]
    mine = engine.scope_status(scope) if in_group else None
    members = []
    for name in group["members"]:
        device = domain.device_named(name)
        if device is None:
            members.append({"name": name, "status": DISCONNECTED, "connected": False, "pending_changes": 0,
                            "last_commit": {}, "message": "not in the trust domain"})
            continue
        if name == me:
            status, connected, message = mine, True, ""
        else:
            view = engine.peers.get(device["id"])
            connected = view is not None and view.connected
            status = view.status.get(scope) if view is not None else None
            message = view.message if view is not None else "no link"
        state = DISCONNECTED if mine is None else _member_status(status, mine, connected)
        vector = status["vv"] if status else {}
        members.append({"name": name, "status": state, "connected": connected,
                        "pending_changes": status["pending"] if status else 0,
                        "last_commit": {names.get(origin, origin): seq for origin, seq in sorted(vector.items())},
                        "message": message})
    states = {m["status"] for m in members}
    overall = next((s for s in GROUP_ORDER if s in states), IN_SYNC)
    conflicts = [{"kind": c["kind"], "partition": c["partition"], "name": c["name"],
                  "devices": sorted({names.get(c["winner"]["origin"], c["winner"]["origin"]),
                                     names.get(c["loser"]["origin"], c["loser"]["origin"])}),
                  "winner": {"device": names.get(c["winner"]["origin"], c["winner"]["origin"]),
                             "value": c["winner"]["body"]},
                  "loser": {"device": names.get(c["loser"]["origin"], c["loser"]["origin"]),
                            "value": c["loser"]["body"]},
                  "detected_at": datetime.fromtimestamp(c["detected_at"], UTC).isoformat()}
                 for c in engine.store.conflicts(scope)]
    return {"name": scope, "type": group["type"], "status": overall, "members": members, "conflicts": conflicts}
