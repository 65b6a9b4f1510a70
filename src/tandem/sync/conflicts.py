"""Conflict records: the losing side of concurrent writes, kept until an operator clears them.

A record is an object of kind `conflicts` in the partition of the object it is about, so it
replicates in that object's scope: every member of the group holds the same records whichever
member detected the conflict (a member catching up by a full load included), and clearing them
(tombstones) clears them everywhere. Its name derives from the loser's key and stamp: devices
that detect the same conflict write the same record.
"""

import hashlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from tandem.config import units
from tandem.config.presentation import present
from tandem.models import CONFIG_RESOURCES, Partition, Pool
from tandem.models.cluster import ConflictSide, ConflictView
from tandem.models.conflict import CONFLICTS
from tandem.store import Body, Store, Transaction, Version

JUDGED_KINDS = frozenset({*(model.kind for model in CONFIG_RESOURCES), units.OVERLAYS})
"""The kinds whose concurrent versions are conflicts (not leases, not conflict records themselves)."""

Reason = Literal["concurrent", "deleted", "replaced", "recreated"]
"""Why the loser lost: the later of two concurrent versions of one object won (`concurrent`), or a
member change was hidden by a concurrent delete, replacement of the member list, or new pool."""


@dataclass(frozen=True, slots=True)
class Side:
    """The winning or losing version of a conflict, as recorded."""

    origin: str
    hlc: int
    value: Body | None
    """As presented (a pool with its members, a member), None for a delete or a member's removal."""

    def dump(self) -> dict[str, Any]:
        return {"origin": self.origin, "hlc": self.hlc, "value": self.value}


def _subject(version: Version) -> tuple[str, str, str, str | None]:
    """What a conflict on `version` is about: (kind, partition, name, member key or None)."""
    if units.is_overlay(version.kind):
        _, partition, pool = units.pool_key(version)
        return Pool.kind, partition, pool, units.overlay_key(version.name)
    return version.kind, version.partition, version.name, None


def _value(txn: Transaction, version: Version) -> Body | None:
    if version.deleted or version.body is None:
        return None
    if units.is_overlay(version.kind):
        return version.body["member"]
    return present(txn, version.kind, version.body)


def record(txn: Transaction, winner: Version, loser: Version, reason: Reason) -> None:
    """Record in `txn` that `loser` lost to `winner`, unless both come to the same thing."""
    winner_side = Side(winner.origin, winner.hlc, _value(txn, winner))
    loser_side = Side(loser.origin, loser.hlc, _value(txn, loser))
    if reason == "concurrent" and winner_side.value == loser_side.value:
        return
    kind, partition, name, member = _subject(loser)
    txn.put(CONFLICTS, *_record_key(loser), {
        "kind": kind, "partition": partition, "name": name, "member": member, "reason": reason,
        "winner": winner_side.dump(), "loser": loser_side.dump(), "detected_at": time.time()})


def withdraw(txn: Transaction, loser: Version) -> None:
    """Delete the record of `loser`, if any: what made it lose has lost in turn."""
    key = _record_key(loser)
    if txn.exists(CONFLICTS, *key):
        txn.delete(CONFLICTS, *key)


def _record_key(loser: Version) -> tuple[str, str]:
    """Where the record of a losing version lives: the partition of what it is about, and a name derived
    from the loser's key and stamp (the same on every device)."""
    kind, partition, name, _ = _subject(loser)
    text = "\0".join((loser.kind, loser.partition, loser.name, str(loser.hlc), loser.origin))
    return name if kind == Partition.kind else partition, hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def views(store: Store, partitions: list[str], names: dict[str, str]) -> list[ConflictView]:
    """The conflict records of these partitions as the status shows them, oldest first; `names`
    maps device ids to names."""
    out = []
    for partition in partitions:
        for r in store.records(CONFLICTS, partition=partition):
            out.append(_present(r.body, names))
    return sorted(out, key=lambda c: (c.detected_at, c.kind, c.partition, c.name))


def _present(body: dict[str, Any], names: dict[str, str]) -> ConflictView:
    winner, loser = body["winner"], body["loser"]
    winner_name = names.get(winner["origin"], winner["origin"])
    loser_name = names.get(loser["origin"], loser["origin"])
    if body["kind"] == Partition.kind:
        where = f"partition {body['name']}"
    else:
        where = f"{body['kind'][:-1]} /{body['partition']}/{body['name']}"
    if body["member"]:
        what = f"member {body['member']} of {where}"
        done = "removed" if loser["value"] is None else "changed"
        cause = {"deleted": "deleted the pool", "replaced": "replaced the pool's members",
                 "recreated": "created the pool anew", "concurrent": "changed it"}[body["reason"]]
        message = f"{what} {done} on {loser_name} was lost: {winner_name} {cause} at the same time"
    else:
        def act(side: dict[str, Any]) -> str:
            return "deleted" if side["value"] is None else "changed"
        message = (f"{where} {act(loser)} on {loser_name} and {act(winner)} on {winner_name} at the same time: "
                   f"{winner_name}'s, the later, is kept")
    return ConflictView(
        kind=body["kind"], partition=body["partition"], name=body["name"], devices=sorted({winner_name, loser_name}),
        winner=ConflictSide(device=winner_name, value=winner["value"]),
        loser=ConflictSide(device=loser_name, value=loser["value"]),
        message=message, detected_at=datetime.fromtimestamp(body["detected_at"], UTC).isoformat(),
        member=body["member"] or None)
