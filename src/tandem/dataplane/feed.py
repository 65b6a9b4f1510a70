"""What the management process tells its data plane process to serve, computed from the store as it changes.

What to serve is every enabled virtual server (of any traffic group) with the pools (members included),
monitors and certificates (keys included) it uses, where the configuration breaks a rule (merged replicas
can) as `violations` resolves it. `StoreCache` reads each object once and again only when a commit
changed it (`forget`, from the store's `on_keys`); `Feed` builds the `Desired` state from it and says
what differs from what the data plane process was last sent (`Feed.changes`: a `changes` message of the
objects put and removed; everything for a data plane process that starts). Reading and building one round
takes one snapshot of the store, off the event loop.

Hand-written for speed: reading and sending the whole configuration on each change took 0.7 s per change
with 10,000 virtual servers and held the management process's event loop (bench/agent.py, change_p99_ms).
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tandem import ipc
from tandem.config.integrity import Violation, may_use, violations, violations_after
from tandem.config.presentation import model_fields, present
from tandem.config.units import OVERLAYS, overlay_parent
from tandem.models import Certificate, Monitor, Partition, Pool, VirtualServer
from tandem.models.fields import resolve_reference
from tandem.store import Body, Store

Key = tuple[str, str]
"""(partition, name)."""
FED_KINDS = (VirtualServer.kind, Pool.kind, Monitor.kind, Certificate.kind)
"""The kinds the data plane process is sent, in the order of the `changes` message."""


Addresses = tuple[dict[str, tuple[str, ...]], tuple[str, ...]]
"""The addresses of the virtual servers of each known traffic group, and of those of none."""


@dataclass(frozen=True)
class Desired:
    """What the data plane process may serve, by kind then key: the enabled virtual servers with the pools
    (members included), monitors and certificates (with their keys) they use, and the traffic groups known
    with their floating addresses. `objects` are the feed's own: valid until its next round."""

    objects: dict[str, dict[Key, Body]]
    traffic_groups: dict[str, tuple[str, ...]]
    violations: frozenset[Violation] = frozenset()
    addresses: Addresses = ({}, ())

    @property
    def virtuals(self) -> list[Body]:
        return list(self.objects[VirtualServer.kind].values())

    @property
    def pools(self) -> list[Body]:
        return list(self.objects[Pool.kind].values())

    @property
    def monitors(self) -> list[Body]:
        return list(self.objects[Monitor.kind].values())

    @property
    def certificates(self) -> list[Body]:
        return list(self.objects[Certificate.kind].values())


class StoreCache:
    """The objects the feed reads, each read once and kept until a commit changes it (`forget`); pools as the
    API shows them (members included), certificates with their keys. Used by one thread at a time."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._bodies: dict[tuple[str, str, str], Body | None] = {}
        self._virtuals: set[Key] | None = None
        """The keys of the virtual servers that may exist (None: not read yet)."""

    def forget(self, keys: Iterable[tuple[str, str, str]]) -> None:
        """Objects a commit changed (kind, partition, name): read again when next asked for."""
        for kind, partition, name in keys:
            if kind == OVERLAYS:  # a member of a pool
                self._bodies.pop((Pool.kind, partition, overlay_parent(name)[0]), None)
            elif kind in FED_KINDS:
                self._bodies.pop((kind, partition, name), None)
                if kind == VirtualServer.kind and self._virtuals is not None:
                    self._virtuals.add((partition, name))

    def clear(self) -> None:
        """Forget everything (after a failure: nothing read before is trusted)."""
        self._bodies.clear()
        self._virtuals = None

    def get(self, kind: str, partition: str, name: str) -> Body | None:
        key = (kind, partition, name)
        if key not in self._bodies:
            body = self._store.get(kind, partition, name)
            if body is not None and kind == Pool.kind:
                body = present(self._store, kind, body)
            elif body is not None and kind == Certificate.kind:  # whole: the data plane needs the keys
                body = model_fields(self._store, kind, body)
            self._bodies[key] = body
        return self._bodies[key]

    def virtuals(self) -> list[tuple[Key, Body]]:
        """Every virtual server (in no particular order: the data plane process orders them)."""
        if self._virtuals is None:
            self._virtuals = set(self._store.keys(VirtualServer.kind))
        found = []
        for key in list(self._virtuals):
            body = self.get(VirtualServer.kind, *key)
            if body is None:
                self._virtuals.discard(key)
            else:
                found.append((key, body))
        return found


Dependency = tuple[str, Key]
"""An object a virtual server needs served with it: (kind, key)."""


class _Served:
    """The virtual servers served and what each needs, kept from round to round: a round takes again only the
    virtual servers its changes concern, and notes what it touched (`touched`), so that the message to the data
    plane process and the addresses are worked out from that alone (going through 11,000 virtual servers and
    16,000 pools for each endpoint change took most of the management process's time, bench/agent.py,
    change_p99_ms)."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[Key, Body]] = {kind: {} for kind in FED_KINDS}
        self._needs: dict[Key, list[Dependency]] = {}
        self._needed_by: dict[Dependency, set[Key]] = {}
        self.touched: dict[str, set[Key]] = {kind: set() for kind in FED_KINDS}
        """The objects put or removed since the data plane process was last told."""
        self.placed: dict[Key, tuple[Any, Any]] = {}
        """The traffic group and address of each virtual server served."""
        self.placements_changed = True

    def users(self, kind: str, key: Key) -> set[Key]:
        """The virtual servers served that need this object."""
        return self._needed_by.get((kind, key), set())

    def drop(self, virtual: Key) -> None:
        if self.objects[VirtualServer.kind].pop(virtual, None) is not None:
            self.touched[VirtualServer.kind].add(virtual)
        for dependency in self._needs.pop(virtual, ()):
            users = self._needed_by[dependency]
            users.discard(virtual)
            if not users:
                del self._needed_by[dependency]
                del self.objects[dependency[0]][dependency[1]]
                self.touched[dependency[0]].add(dependency[1])

    def add(self, key: Key, virtual: Body, cache: StoreCache, unmonitored: set[Key]) -> None:
        """Serve a virtual server with its pool and its rules' (members included), their monitors (unless
        `unmonitored`) and CA bundles, and its certificates; what is missing is left out."""
        needs: list[Dependency] = []
        partition = key[0]
        certificates = [(partition, reference) for reference in virtual.get("certificates", ())]
        for reference in (virtual.get("pool"), *(rule.get("pool") for rule in virtual.get("rules", ()))):
            pool_key = resolve_reference(partition, reference) if reference else None
            pool = cache.get(Pool.kind, *pool_key) if pool_key is not None else None
            if pool is None:
                continue
            needs.append((Pool.kind, pool_key))
            if pool.get("monitor") and pool_key not in unmonitored:
                needs.append((Monitor.kind, resolve_reference(pool_key[0], pool["monitor"])))
            ca = (pool.get("tls") or {}).get("ca")
            if ca and may_use(pool_key[0], resolve_reference(pool_key[0], ca)[0]):  # the pool's CA bundle
                certificates.append((pool_key[0], ca))
        needs += [(Certificate.kind, resolve_reference(*certificate)) for certificate in certificates]
        self.objects[VirtualServer.kind][key] = virtual
        self.touched[VirtualServer.kind].add(key)
        kept = self._needs[key] = []
        for kind, needed in dict.fromkeys(needs):
            body = cache.get(kind, *needed)
            if body is not None:
                kept.append((kind, needed))
                self._needed_by.setdefault((kind, needed), set()).add(key)
                self.objects[kind][needed] = body
                self.touched[kind].add(needed)

    def place(self, key: Key, placement: tuple[Any, Any] | None) -> None:
        """Note where a virtual server now is (None: not served)."""
        if self.placed.get(key) != placement:
            self.placements_changed = True
            if placement is None:
                del self.placed[key]
            else:
                self.placed[key] = placement


@dataclass
class Feed:
    """Builds what the data plane process may serve and what it must be told of it."""

    store: Store
    cache: StoreCache = field(init=False)
    sent: dict[str, dict[Key, Body]] | None = field(init=False, default=None)
    """What the data plane process was sent (None: nothing yet, or it started again)."""
    sent_traffic_groups: dict[str, tuple[str, ...]] = field(init=False, default_factory=dict)
    _found: frozenset[Violation] | None = field(init=False, default=None)
    """The violations of the last round (None: none yet, or forgotten after a failure)."""
    _served: _Served = field(init=False, default_factory=_Served)
    _addresses: Addresses | None = field(init=False, default=None)
    _addresses_of: frozenset[str] = field(init=False, default=frozenset())
    """The traffic groups `_addresses` were worked out with."""

    def __post_init__(self) -> None:
        self.cache = StoreCache(self.store)

    def reset(self) -> None:
        """Forget everything read and sent (after a failure: nothing is trusted); the next round starts anew."""
        self.cache.clear()
        self.sent, self._found, self._served, self._addresses = None, None, _Served(), None

    def build(self, changed: Iterable[tuple[str, str, str]], traffic_groups: Mapping[str, Iterable[str]]) -> Desired:
        """What to serve now (`traffic_groups`: the floating addresses of each traffic group known), `changed`
        (the keys commits changed since the last build) read again; on one
        snapshot of the store (call it off the event loop). Only what the changes concern is looked at again
        (the whole configuration on the first round, and when partitions change)."""
        changed = list(changed)
        with self.store.snapshot():
            self.cache.forget(changed)
            previous = self._found
            if previous is None or any(kind == Partition.kind for kind, _, _ in changed):
                self._found = frozenset(violations(self.store))
                concerned = {key for key, _ in self.cache.virtuals()} | set(self._served.objects[VirtualServer.kind])
            else:
                self._found = violations_after(self.store, previous, changed)
                concerned = self._concerned(changed, previous ^ self._found)
            self._serve(concerned)
        known = {name: tuple(traffic_groups[name]) for name in sorted(traffic_groups)}
        return Desired(self._served.objects, known, self._found, self._placed_addresses(frozenset(known)))

    def _placed_addresses(self, known: frozenset[str]) -> Addresses:
        """The addresses of the virtual servers served, by known traffic group and of none; worked out again only
        when a virtual server's address or traffic group, or the traffic groups known, changed."""
        served = self._served
        if self._addresses is None or served.placements_changed or known != self._addresses_of:
            by_traffic_group: dict[str, set[str]] = {}
            standalone: set[str] = set()
            for traffic_group, address in served.placed.values():
                if traffic_group in known:
                    by_traffic_group.setdefault(traffic_group, set()).add(address)
                else:
                    standalone.add(address)
            self._addresses = ({tg: tuple(sorted(a)) for tg, a in by_traffic_group.items()}, tuple(sorted(standalone)))
            self._addresses_of, served.placements_changed = known, False
        return self._addresses

    def _concerned(self, changed: list[tuple[str, str, str]], moved: frozenset[Violation]) -> set[Key]:
        """The virtual servers that changed, need an object that changed, or whose violations (or those of an
        object they need) came or went."""
        concerned: set[Key] = set()
        for kind, partition, name in changed:
            if kind == VirtualServer.kind:
                concerned.add((partition, name))
            elif kind == OVERLAYS:  # a member of a pool
                concerned |= self._served.users(Pool.kind, (partition, overlay_parent(name)[0]))
            elif kind in FED_KINDS:
                concerned |= self._served.users(kind, (partition, name))
        for violation in moved:
            key = (violation.partition, violation.name)
            concerned |= {key} if violation.kind == VirtualServer.kind else self._served.users(violation.kind, key)
        return concerned

    def _serve(self, concerned: set[Key]) -> None:
        found = self._found or frozenset()
        unserved = {(v.partition, v.name) for v in found if v.kind == VirtualServer.kind}
        unmonitored = {(v.partition, v.name) for v in found if v.kind == Pool.kind and v.served}
        for key in concerned:
            self._served.drop(key)
        for key in concerned:
            virtual = self.cache.get(VirtualServer.kind, *key)
            if virtual is not None and virtual.get("enabled", True) and key not in unserved:
                self._served.add(key, virtual, self.cache, unmonitored)
                self._served.place(key, (virtual.get("traffic_group"), virtual.get("address")))
            else:
                self._served.place(key, None)

    def changes(self, desired: Desired) -> ipc.Message | None:
        """The `changes` message taking the data plane process from what it was sent to `desired` (the feed's
        last round; all of it when it was sent nothing); None when nothing differs. Marks it sent."""
        full = self.sent is None
        touched = self._served.touched
        if full:
            sent: dict[str, dict[Key, Body]] = {kind: {} for kind in FED_KINDS}
            touched = {kind: set(objects) for kind, objects in desired.objects.items()}
        else:
            assert self.sent is not None
            sent = self.sent
        put: dict[str, list[Body]] = {kind: [] for kind in FED_KINDS}
        removed: dict[str, list[list[str]]] = {kind: [] for kind in FED_KINDS}
        for kind in FED_KINDS:
            objects, was = desired.objects[kind], sent[kind]
            for key in touched[kind]:
                body = objects.get(key)
                if body is None:
                    if was.pop(key, None) is not None:
                        removed[kind].append(list(key))
                elif was.get(key) is not body:
                    was[key] = body
                    put[kind].append(body)
        self._served.touched = {kind: set() for kind in FED_KINDS}
        unchanged = desired.traffic_groups == self.sent_traffic_groups
        self.sent, self.sent_traffic_groups = sent, desired.traffic_groups
        if not full and unchanged and not any(put.values()) and not any(removed.values()):
            return None
        return {"type": "changes", "full": full, "put": put, "removed": removed,
                "traffic_groups": {name: list(addresses) for name, addresses in desired.traffic_groups.items()}}
