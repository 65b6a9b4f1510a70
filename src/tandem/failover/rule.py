"""The failover rule: from what a device hears, its next state for one traffic group.

Every device applies the same rule to the same facts, so all reach the same answer.
"""

from dataclasses import dataclass

ACTIVE, STANDBY, OFFLINE = "active", "standby", "offline"


@dataclass(frozen=True)
class Member:
    """What is known of one member right now (this device included)."""

    name: str
    device_id: str
    alive: bool
    offline: bool
    state: str
    declined: bool


def ranked(members: list[Member], ha_order: list[str]) -> list[Member]:
    """Members in HA order; those the order does not name come after, by name."""
    position = {name: i for i, name in enumerate(ha_order)}
    return sorted(members, key=lambda m: (position.get(m.name, len(position)), m.name, m.device_id))


def decide(me: Member, members: list[Member], ha_order: list[str], auto_failback: bool,
           failback_in: float = 0.0, quorum: bool = False) -> tuple[str, str]:
    """This device's next state for the traffic group, and why. `failback_in`: seconds before this device may take
    the group back by auto-failback (its failback delay not yet over); `quorum`: the group is served only by a
    device that hears a majority of its members."""
    if me.offline:
        return OFFLINE, "device is offline"
    heard = sum(m.alive for m in members)
    if quorum and 2 * heard <= len(members):
        return STANDBY, f"no quorum: hears {heard} of {len(members)} members"
    order = ranked([m for m in members if m.alive], ha_order)
    eligible = [m for m in order if not m.offline]
    candidates = [m for m in eligible if not m.declined] or eligible  # a decline holds while others can serve
    actives = [m for m in order if m.state == ACTIVE]
    if me.state == ACTIVE:
        first_active = actives[0] if actives else me
        if first_active.device_id != me.device_id:
            return STANDBY, f"{first_active.name} is also active and comes first in HA order"
        if me.declined and any(c.device_id != me.device_id for c in candidates):
            return STANDBY, "forced to standby"
        return ACTIVE, ""
    if not candidates or candidates[0].device_id != me.device_id:
        return me.state if me.state == STANDBY else STANDBY, ""
    if not actives:
        return ACTIVE, "no active device; first candidate in HA order"
    if auto_failback and failback_in <= 0:
        return ACTIVE, f"auto-failback from {actives[0].name}"
    return STANDBY, ""
