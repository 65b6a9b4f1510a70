"""Mirroring a partition one way to a peer cluster (disaster recovery).

The source cluster's peering leader pushes: after a (re)connection it compares digests of the
partition and, if they differ, sends the partition whole; then it sends each change as it commits,
with the digest the destination must reach, and sends the whole again whenever the destination
says it did not reach it. The destination writes only the difference, in one transaction, so its
own device group replicates the result; the partition is read-only there while it is a mirror.
"""

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import ValidationError

from tandem.config import units
from tandem.config.objects import write_object
from tandem.config.pool_members import stored_member, write_member
from tandem.config.presentation import model_fields
from tandem.errors import ApiError
from tandem.models import Certificate, Monitor, Partition, Pool, PoolMember, VirtualServer
from tandem.models.fields import member_key
from tandem.models.resources import CONFIG_MODELS
from tandem.peering.links import LinkSet
from tandem.peering.records import Relationships, iso
from tandem.peering.wire import WireError
from tandem.store import GLOBAL, Store
from tandem.tasks import cancel

log = logging.getLogger("tandem.peering")

"""What a partition's state is made of (a pool with its members)."""
CHANGES = CONFIG_MODELS | {PoolMember.kind: PoolMember}
"""What a change may be about: one of those, or one member of a pool (named `POOL/ADDRESS:PORT`), so that
a member added to a large pool sends that member, not the pool."""
RETRY = 0.5


def _where(kind: str, partition: str, name: str) -> tuple[str, str, str]:
    return (kind, GLOBAL, partition) if kind == Partition.kind else (kind, partition, name)


def presented(store: Store, kind: str, partition: str, name: str) -> dict[str, Any] | None:
    """One object of the partition (or one member of a pool) as its model's fields (a certificate's key
    included: the mirror may serve it), or None."""
    if kind == PoolMember.kind:
        pool, _, key = name.partition("/")
        stored = store.get(Pool.kind, partition, pool)
        return None if stored is None else stored_member(store, stored, key)
    body = store.get(*_where(kind, partition, name))
    return None if body is None else model_fields(store, kind, body)


def snapshot(store: Store, partition: str) -> list[list[Any]]:
    """The partition's objects as [kind, name, body] (bodies as `presented`), the partition itself first."""
    objects: list[list[Any]] = []
    body = presented(store, Partition.kind, partition, partition)
    if body is not None:
        objects.append([Partition.kind, partition, body])
    for kind in (Monitor.kind, Certificate.kind, Pool.kind, VirtualServer.kind):
        objects.extend([kind, r.name, model_fields(store, kind, r.body)]
                       for r in store.records(kind, partition=partition))
    return objects


def digest(objects: list[list[Any]]) -> str:
    lines = sorted(orjson.dumps(o, option=orjson.OPT_SORT_KEYS) for o in objects)
    return hashlib.sha256(b"\n".join(lines)).hexdigest()


@dataclass(frozen=True)
class MirrorChange:
    """One object of a partition (or one member of a pool) to write as `body`, or to delete (`body` None)."""

    kind: str
    name: str
    body: dict[str, Any] | None
    """As its model's fields (`presented`)."""


def _checked(partition: str, objects: Any, models: dict[str, type]) -> list[MirrorChange]:
    """Objects (or changes: a None body deletes) from a peer, each of `models` and valid for `partition`;
    ValueError if not."""
    if not isinstance(objects, list) or len(objects) > 1_000_000:
        raise ValueError("objects must be a list")
    out = []
    for item in objects:
        if not (isinstance(item, list) and len(item) == 3 and item[0] in models and isinstance(item[1], str)):
            raise ValueError(f"malformed object {str(item)[:80]}")
        kind, name, body = item
        if body is not None:
            if not isinstance(body, dict):
                raise ValueError(f"malformed body of {kind} {name}")
            try:
                model = models[kind].model_validate(body)
            except ValidationError as error:
                raise ValueError(f"invalid {kind} {name}: {error.errors()[0]['msg']}") from None
            if body.get("partition", partition) != partition or (kind == Partition.kind and name != partition):
                raise ValueError(f"{kind} {name} is not in partition {partition}")
            if kind == PoolMember.kind and name.partition("/")[2] != member_key(model.address, model.port):
                raise ValueError(f"member {name} is not {member_key(model.address, model.port)}")
        out.append(MirrorChange(kind, name, body))
    return out


def apply_state(store: Store, partition: str, objects: Any) -> int:
    """Make the partition equal to `objects`; the number of objects written or deleted."""
    wanted = {(c.kind, c.name): c.body for c in _checked(partition, objects, CONFIG_MODELS)}
    current = {(kind, name): body for kind, name, body in snapshot(store, partition)}
    changes = [MirrorChange(kind, name, body) for (kind, name), body in wanted.items()
               if current.get((kind, name)) != body]
    changes += [MirrorChange(kind, name, None) for (kind, name) in current.keys() - wanted.keys()]
    return _write(store, partition, changes)


def apply_changes(store: Store, partition: str, changes: Any) -> int:
    return _write(store, partition, _checked(partition, changes, CHANGES))


def _write(store: Store, partition: str, changes: list[MirrorChange]) -> int:
    """Write the changes, objects first, then single members (of the pools as just written)."""
    if not changes:
        return 0
    with store.transaction() as txn:
        for change in sorted(changes, key=lambda change: change.kind == PoolMember.kind):
            if change.kind == PoolMember.kind:
                pool, _, key = change.name.partition("/")
                stored = txn.get(Pool.kind, partition, pool)
                if stored is not None and stored_member(txn, stored, key) != change.body:
                    write_member(txn, stored, key, change.body)
                continue
            where = _where(change.kind, partition, change.name)
            stored = txn.get(*where)
            if change.body is not None:
                current = model_fields(txn, change.kind, stored) if stored is not None else None
                write_object(txn, CONFIG_MODELS[change.kind].model_validate(change.body), stored, current)
            elif stored is not None:
                txn.delete(*where)
    return len(changes)


@dataclass(frozen=True)
class MirrorView:
    """One mirrored partition as the API shows it."""

    partition: str
    state: str
    pusher: str | None
    """The device pushing it (this cluster's peering leader), if known."""
    last_sync: str | None
    objects: int | None
    message: str


@dataclass
class MirrorState:
    """How one mirrored partition stands, as the device pushing it sees it."""

    in_sync: bool = False
    state: str = "waiting"
    message: str = "not pushed yet"
    last_sync: float | None = None
    objects: int = 0
    dirty: set[tuple[str, str]] = field(default_factory=set)


class MirrorSource:
    """Pushes this cluster's mirrored partitions to their peers (on the peering leader only)."""

    def __init__(self, store: Store, relationships: Relationships, links: LinkSet,
                 is_leader: Callable[[], bool]) -> None:
        self._store = store
        self._relationships = relationships
        self._links = links
        self._is_leader = is_leader
        self.states: dict[tuple[str, str], MirrorState] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        await cancel(self._task)

    def wake(self) -> None:
        self._wake.set()

    def state(self, uuid: str, partition: str) -> MirrorState:
        return self.states.setdefault((uuid, partition), MirrorState())

    def view(self, uuid: str, partition: str, pusher: str | None) -> MirrorView:
        state = self.state(uuid, partition)
        if not self._is_leader():
            return MirrorView(partition=partition, state="remote", pusher=pusher, last_sync=None, objects=None,
                              message=f"pushed by {pusher}" if pusher else "no device of this cluster pushes it now")
        return MirrorView(partition=partition, state=state.state, pusher=pusher, last_sync=iso(state.last_sync),
                          objects=state.objects, message=state.message)

    def keys_changed(self, keys: list[tuple[str, str, str]]) -> None:
        """Note the objects of mirrored partitions that changed (here or replicated from a member)."""
        mirrored = {(r.uuid, p) for r in self._relationships.all() for p in r.mirrors}
        if not mirrored:
            return
        for changed_kind, changed_partition, changed_name in keys:
            if units.is_overlay(changed_kind):
                partition = changed_partition
                kind = PoolMember.kind
                name = f"{units.overlay_parent(changed_name)[0]}/{units.overlay_key(changed_name)}"
            elif changed_kind in CONFIG_MODELS:
                kind, name = changed_kind, changed_name
                partition = name if kind == Partition.kind else changed_partition
            else:
                continue
            for uuid, mirrored_partition in mirrored:
                if mirrored_partition == partition:
                    self.state(uuid, partition).dirty.add((kind, name))
                    self._wake.set()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), RETRY)
            self._wake.clear()
            if not self._is_leader():
                for state in self.states.values():
                    state.in_sync = False
                continue
            wanted = {(r.uuid, p) for r in self._relationships.all() if r.key for p in r.mirrors}
            for key in set(self.states) - wanted:
                del self.states[key]
            for uuid, partition in sorted(wanted):
                await self._push(uuid, partition)

    async def _push(self, uuid: str, partition: str) -> None:
        state = self.state(uuid, partition)
        link = self._links.up(uuid)
        if link is None:
            state.in_sync, state.state, state.message = False, "broken", "no session with the peer cluster"
            return
        if state.in_sync and not state.dirty:
            return
        try:
            objects = snapshot(self._store, partition)
            mine = digest(objects)
            if state.in_sync:
                changes, state.dirty = state.dirty, set()
                body = [[k, n, presented(self._store, k, partition, n)] for k, n in sorted(changes)]
                reply = await link.call({"type": "mirror-changes", "partition": partition, "changes": body,
                                         "digest": mine})
                state.in_sync = reply["type"] == "mirrored"
                if not state.in_sync:
                    self._wake.set()  # the destination missed something: send the whole next round
                    return
            else:
                state.dirty = set()
                theirs = await link.call({"type": "mirror-digest", "partition": partition})
                if theirs.get("digest") != mine:
                    await link.call({"type": "mirror-state", "partition": partition, "objects": objects}, 120.0)
                state.in_sync = True
            state.state, state.message, state.last_sync, state.objects = "in-sync", "", time.time(), len(objects)
        except WireError as error:
            state.in_sync, state.state, state.message = False, "broken", str(error)


class MirrorTarget:
    """Receives the partitions a peer mirrors into this cluster."""

    def __init__(self, store: Store, relationships: Relationships, adopt: Callable[[str], None],
                 synced: Callable[[str], bool]) -> None:
        self._store = store
        self._relationships = relationships
        self._adopt = adopt
        """Called with a partition received for the first time (to sync it within this cluster)."""
        self._synced = synced
        """Whether a device group of this cluster syncs the partition (it exists on its members)."""

    def _check(self, uuid: str, partition: Any) -> str:
        if not isinstance(partition, str) or not partition:
            raise ValueError("malformed partition")
        owner = self._relationships.mirrored_in(partition)
        if owner is not None and owner.uuid != uuid:
            raise ValueError(f"partition {partition} here is a mirror of peer {owner.name}")
        if owner is None and (self._synced(partition) or self._store.get(Partition.kind, GLOBAL, partition)):
            raise ValueError(f"partition {partition} exists here and is not a mirror: it is not overwritten")
        return partition

    def digest(self, uuid: str, message: dict[str, Any]) -> dict[str, Any]:
        partition = self._check(uuid, message.get("partition"))
        return {"type": "digest", "digest": digest(snapshot(self._store, partition))}

    async def state(self, uuid: str, message: dict[str, Any]) -> dict[str, Any]:
        partition = self._check(uuid, message.get("partition"))
        written = await self._store.write(apply_state, self._store, partition, message.get("objects"))
        record = self._relationships.get(uuid)
        if partition not in record.mirrored_in:
            self._relationships.put(record.model_copy(update={"mirrored_in": [*record.mirrored_in, partition]}))
            try:
                self._adopt(partition)
            except ApiError as error:
                log.warning("mirrored partition %s stays on this device only: %s", partition, error.message)
        return {"type": "mirrored", "written": written}

    async def changes(self, uuid: str, message: dict[str, Any]) -> dict[str, Any]:
        partition = self._check(uuid, message.get("partition"))
        if partition not in self._relationships.get(uuid).mirrored_in:
            return {"type": "resync"}
        await self._store.write(apply_changes, self._store, partition, message.get("changes"))
        same = digest(snapshot(self._store, partition)) == message.get("digest")
        return {"type": "mirrored" if same else "resync"}

    def stop(self, uuid: str, message: dict[str, Any]) -> dict[str, Any]:
        partition = message.get("partition")
        record = self._relationships.get(uuid)
        if partition in record.mirrored_in:
            self._relationships.put(record.model_copy(
                update={"mirrored_in": [p for p in record.mirrored_in if p != partition]}))
        return {"type": "stopped"}
