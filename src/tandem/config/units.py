"""A pool and its members as one unit of replication and of conflict.

A pool's stored record holds its members as they were at its last *replacement* (its creation, or
a write of its whole member list), with two internal fields: `incarnation`, the stamp of the write
that created the pool (a pool created again under an old name is another incarnation), and
`members_since`, the stamp of that last replacement. A change of one member alone is an *overlay*:
an object of its own, named `POOL/INCARNATION/ADDRESS:PORT`, whose body is `{"member": {...}}`, or
`{"member": null}` for a removal. A pool version's members are its own list, changed by every
overlay of its incarnation stamped after its `members_since`.

So, with every device resolving each record by the greater (stamp, origin):

- a replacement wins or loses whole: it is one version of the pool's record, and it hides the
  overlays made before it (it wrote the whole list), while an overlay made after it applies on top;
- changes of different members are overlays of different names: concurrent ones all apply;
- a change of the pool's other fields copies the list and `members_since`: concurrent overlays
  still apply (a description change does not undo a member added elsewhere);
- a delete tombstones the pool's record only: if it loses to a concurrent change, the pool comes
  back whole; if it wins, every overlay of that incarnation is hidden with it; a new pool of the
  same name has another incarnation and never shows them.

Overlays hidden by a concurrent replacement or delete are losers: the sync engine records them as
conflicts (with `overlay_alive`, `overlays_of` and `pool_key`).
"""

from collections.abc import Iterable
from typing import Literal

from tandem.errors import Invalid
from tandem.models import Pool, PoolMember
from tandem.models.fields import member_key
from tandem.store import Body, Record, Version
from tandem.store.clock import Stamp

POOLS = Pool.kind
OVERLAYS = PoolMember.kind
"""The store kind of member overlays."""
INTERNAL_FIELDS = ("incarnation", "members_since")
"""Stored in a pool's (and, for `incarnation`, every object's) record, never presented."""


def overlay_name(pool: str, incarnation: str, key: str) -> str:
    return f"{pool}/{incarnation}/{key}"


def overlay_prefix(pool: str, incarnation: str) -> str:
    """The names of the overlays of one incarnation of a pool start with this."""
    return f"{pool}/{incarnation}/"


def overlay_parent(name: str) -> tuple[str, str]:
    """The pool name and incarnation an overlay belongs to."""
    pool, _, rest = name.partition("/")
    incarnation, _, _ = rest.rpartition("/")
    return pool, incarnation


def overlay_key(name: str) -> str:
    """The member key (`address:port`) an overlay changes."""
    return name.rpartition("/")[2]


def keyed(members: Iterable[Body]) -> dict[str, Body]:
    """Members by `address:port`."""
    return {member_key(m["address"], m["port"]): m for m in members}


def member_list(pool: Pool) -> list[Body]:
    """The members of a pool being written, as stored; `Invalid` naming a member listed twice."""
    members: dict[str, Body] = {}
    for index, member in enumerate(pool.members):
        key = member_key(member.address, member.port)
        if key in members:
            raise Invalid(f"member {key} is listed twice", target=f"members.{index}")
        members[key] = member.model_dump()
    return [members[key] for key in sorted(members)]


def resolve(pool_body: Body, overlays: Iterable[Record]) -> list[Body]:
    """The members of a stored pool version: its list, changed by the overlays (of its incarnation)
    made after its last replacement; in `address:port` order."""
    since = pool_body.get("members_since", "")
    members = keyed(pool_body.get("members", []))
    for overlay in overlays:
        if str(overlay.stamp) <= since:
            continue
        key, member = overlay_key(overlay.name), overlay.body["member"]
        if member is None:
            members.pop(key, None)
        else:
            members[key] = member
    return [PoolMember.current(members[key]) for key in sorted(members)]


def member_of(pool_body: Body, overlay: Record | None, key: str) -> Body | None:
    """One member of a stored pool version (None: it has no such member), given the overlay of that
    member in the pool's incarnation, if any: a single lookup where `resolve` reads them all."""
    if overlay is not None and str(overlay.stamp) > pool_body.get("members_since", ""):
        member = overlay.body["member"]
    else:
        member = next((m for m in pool_body.get("members", []) if member_key(m["address"], m["port"]) == key), None)
    return None if member is None else PoolMember.current(member)


def stored_pool(pool: Pool, body: Body, stamp: Stamp, before: Body | None,
                members_before: list[Body]) -> Body:
    """The record of a pool written at `stamp` (`body`: its other fields): a replacement when its
    members differ from `members_before` (or it is new), else a change that keeps the list and the
    stamp of the last replacement, so that overlays made concurrently elsewhere still apply."""
    members = member_list(pool)
    if before is not None and keyed(members) == keyed(members_before):
        return body | {"members": before.get("members", []), "incarnation": before.get("incarnation", ""),
                       "members_since": before.get("members_since", "")}
    incarnation = str(stamp) if before is None else before.get("incarnation", "")
    return body | {"members": members, "incarnation": incarnation, "members_since": str(stamp)}


# -- judging overlays against pool versions (the sync engine's conflicts) ------------------------

def is_overlay(kind: str) -> bool:
    return kind == OVERLAYS


def overlay_alive(overlay: Version, pool: Version | None) -> bool:
    """Whether an overlay version counts in a pool version."""
    if pool is None or pool.deleted or pool.body is None:
        return False
    _, incarnation = overlay_parent(overlay.name)
    return (incarnation == pool.body.get("incarnation", "")
            and str(overlay.stamp) > pool.body.get("members_since", ""))


def pool_key(overlay: Version) -> tuple[str, str, str]:
    """The store key of the pool an overlay version belongs to."""
    return POOLS, overlay.partition, overlay_parent(overlay.name)[0]


def _incarnation(pool: Version) -> str:
    return pool.body.get("incarnation", "") if pool.body is not None else ""


def hiding_reason(overlay: Version, pool: Version) -> Literal["deleted", "recreated", "replaced"]:
    """Why a pool version hides an overlay version: the pool is deleted, is another incarnation, or
    had its member list replaced after the overlay."""
    if pool.deleted:
        return "deleted"
    if overlay_parent(overlay.name)[1] != _incarnation(pool):
        return "recreated"
    return "replaced"


def older_incarnation(overlay: Version, pool: Version) -> bool:
    """Whether an overlay belongs to an incarnation of its pool older than this (live) pool version's."""
    return overlay_parent(overlay.name)[1] < _incarnation(pool)


def overlays_of(pool: Version | None) -> str | None:
    """The name prefix of the overlays that may count in a pool version (None: a tombstone has none)."""
    if pool is None or pool.deleted:
        return None
    return overlay_prefix(pool.name, _incarnation(pool))
