"""The failover rule: from what a device hears, its next state for one traffic group.

Every device applies the same rule to the same facts, so all reach the same answer.
"""

from dataclasses import dataclass

from tandem.models.cluster import FULL_SCORE

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
    score: int = FULL_SCORE
    """Its score for the traffic group: `FULL_SCORE` less the weights of its trackers that are down."""
    down: tuple[str, ...] = ()
    """Its trackers that are down (`gateway 198.18.0.1`)."""


def in_ha_order(members: list[Member], ha_order: list[str]) -> list[Member]:
    """Members in HA order; those the order does not name come after, by name."""
    position = {name: i for i, name in enumerate(ha_order)}
    return sorted(members, key=lambda m: (position.get(m.name, len(position)), m.name, m.device_id))


def ranked(members: list[Member], ha_order: list[str]) -> list[Member]:
    """Members by score, highest first, then in HA order."""
    return sorted(in_ha_order(members, ha_order), key=lambda m: -m.score)


def lacks_quorum(members: list[Member]) -> bool:
    """This device hears no majority of the members, itself included."""
    return 2 * sum(m.alive for m in members) <= len(members)


def candidates_of(members: list[Member], ha_order: list[str]) -> list[Member]:
    """Those who may take the traffic group, best first: alive, not offline, not declining it (a decline holds
    while another can serve)."""
    eligible = [m for m in ranked([m for m in members if m.alive], ha_order) if not m.offline]
    return [m for m in eligible if not m.declined] or eligible


def outscores_active(me: Member, members: list[Member], ha_order: list[str]) -> bool:
    """Whether `me`, a standby, is the best candidate and scores higher than every device active now."""
    candidates = candidates_of(members, ha_order)
    actives = [m for m in members if m.alive and m.state == ACTIVE and m.device_id != me.device_id]
    return (me.state != ACTIVE and bool(actives) and bool(candidates) and candidates[0].device_id == me.device_id
            and all(me.score > active.score for active in actives))


def why_outscored(active: Member, me: Member) -> str:
    """`dev-1 score 50 < dev-2 score 100: gateway 198.18.0.1 down`."""
    return (f"{active.name} score {active.score} < {me.name} score {me.score}: "
            + (", ".join(f"{tracker} down" for tracker in active.down) or "its trackers"))


def decide(me: Member, members: list[Member], ha_order: list[str], auto_failback: bool,
           failback_in: float = 0.0, quorum: bool = False, takeover_in: float = 0.0) -> tuple[str, str]:
    """This device's next state for the traffic group, and why. `failback_in`: seconds before this device may take
    the group back by auto-failback (its failback delay not yet over); `quorum`: the group is served only by a
    device that hears a majority of its members; `takeover_in`: seconds before this device, outscoring the active
    one, may take the group over (its score hold not yet over)."""
    if me.offline:
        return OFFLINE, "device is offline"
    if quorum and lacks_quorum(members):
        return STANDBY, f"no quorum: hears {sum(m.alive for m in members)} of {len(members)} members"
    candidates = candidates_of(members, ha_order)
    actives = [m for m in ranked([m for m in members if m.alive], ha_order) if m.state == ACTIVE]
    if me.state == ACTIVE:
        first_active = actives[0] if actives else me
        if first_active.device_id != me.device_id:
            if first_active.score > me.score:
                return STANDBY, f"{first_active.name} is also active: {why_outscored(me, first_active)}"
            return STANDBY, f"{first_active.name} is also active and comes first in HA order"
        if me.declined and any(c.device_id != me.device_id for c in candidates):
            return STANDBY, "forced to standby"
        return ACTIVE, ""
    if not candidates or candidates[0].device_id != me.device_id:
        return me.state if me.state == STANDBY else STANDBY, ""
    if not actives:
        return ACTIVE, "no active device; first candidate in HA order"
    if outscores_active(me, members, ha_order):
        return (ACTIVE, why_outscored(actives[0], me)) if takeover_in <= 0 else (STANDBY, "")
    if auto_failback and failback_in <= 0:
        return ACTIVE, f"auto-failback from {actives[0].name}"
    return STANDBY, ""
