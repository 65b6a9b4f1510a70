"""The objects the data plane process was sent, and the virtual servers they make.

The management process sends `changes` messages (`feed`): the virtual servers, pools (members included),
monitors and certificates (keys included) put and removed since the last. `Catalog` keeps them by key and
builds each virtual server's `ServedVirtual` again only when it or something it uses changed, so that a
change costs what it touches (bench/agent.py, change_p99_ms: building 10,000 virtual servers again on each
change held the data plane process for most of a second). An unchanged virtual server keeps its
`ServedVirtual` object: the engines can tell what changed by identity.
"""

import dataclasses
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from ipaddress import ip_address
from typing import Any

from tandem.dataplane.engine import ServedCertificate, ServedPool, ServedVirtual, served_from_config, served_pool
from tandem.models import Certificate, Monitor, Pool, VirtualServer
from tandem.models.fields import resolve_reference
from tandem.models.resources import DEFAULT_PARTITION

log = logging.getLogger("tandem.dataplane")

Key = tuple[str, str]
"""(partition, name)."""
Dependency = tuple[str, Key]
"""(kind, key) of an object a virtual server is built from (present or not)."""


def _key(body: Mapping[str, Any]) -> Key:
    return body.get("partition", DEFAULT_PARTITION), body["name"]


class Catalog:
    """The objects sent, by kind and key, and the virtual servers built from them."""

    def __init__(self) -> None:
        self._clear()

    def _clear(self) -> None:
        self.objects: dict[str, dict[Key, Mapping[str, Any]]] = {
            kind: {} for kind in (VirtualServer.kind, Pool.kind, Monitor.kind, Certificate.kind)}
        self.traffic_groups: dict[str, tuple[str, ...]] = {}
        """The traffic groups known, with their floating addresses."""
        self._built: dict[Key, ServedVirtual | None] = {}
        """Each virtual server built (None: its configuration cannot be served)."""
        self._users: dict[Dependency, set[Key]] = defaultdict(set)
        """The virtual servers built from each object."""
        self._uses: dict[Key, set[Dependency]] = {}
        """What each virtual server was built from (to take it out of `_users` when built again or gone)."""
        self._order: list[Key] | None = None
        """The virtual servers' keys in order (None: one came or went since): sorting 11,000 at each change took
        a fifth of the data plane process's time (bench/agent.py, change_p99_ms)."""

    def update(self, message: Mapping[str, Any]) -> None:
        """Take a `changes` message (a `full` one replaces everything)."""
        if message["full"]:
            self._clear()
        for kind, bodies in message["put"].items():
            for body in bodies:
                key = _key(body)
                if kind == VirtualServer.kind and key not in self.objects[kind]:
                    self._order = None  # a virtual server came
                self.objects[kind][key] = body
                self._changed(kind, key)
        for kind, keys in message["removed"].items():
            for partition, name in keys:
                if self.objects[kind].pop((partition, name), None) is not None and kind == VirtualServer.kind:
                    self._order = None  # one went
                self._changed(kind, (partition, name))
        traffic_groups = {name: tuple(addresses) for name, addresses in message["traffic_groups"].items()}
        moved = {name for name in traffic_groups.keys() | self.traffic_groups.keys()
                 if traffic_groups.get(name) != self.traffic_groups.get(name)}
        self.traffic_groups = traffic_groups
        if moved:  # the source address of their virtual servers with `snat` automap
            for key, built in list(self._built.items()):
                if built is not None and built.snat == "automap" and built.traffic_group in moved:
                    del self._built[key]

    def _changed(self, kind: str, key: Key) -> None:
        if kind == VirtualServer.kind:
            self._built.pop(key, None)
            for dependency in self._uses.pop(key, ()):
                self._users[dependency].discard(key)
        for user in self._users.pop((kind, key), ()):
            self._built.pop(user, None)

    def served(self) -> list[ServedVirtual]:
        """Every enabled virtual server that can be served, in (partition, name) order; those not built since
        what they use changed are built now."""
        pools: dict[Key, ServedPool] = {}  # built this time
        out = []
        if self._order is None:
            self._order = sorted(self.objects[VirtualServer.kind])
        for key in self._order:
            if key not in self._built:
                self._built[key] = self._build(self.objects[VirtualServer.kind][key], pools)
            virtual = self._built[key]
            if virtual is not None and virtual.enabled:
                out.append(virtual)
        return out

    def pool(self, key: Key) -> ServedPool | None:
        """The pool `key` with its monitor, as probed (None: there is none)."""
        pool = self.objects[Pool.kind].get(key)
        if pool is None:
            return None
        monitor_key = self._monitor_key(key, pool)
        return served_pool(pool, self.objects[Monitor.kind].get(monitor_key) if monitor_key else None)

    @staticmethod
    def _monitor_key(pool_key: Key, pool: Mapping[str, Any]) -> Key | None:
        return resolve_reference(pool_key[0], pool["monitor"]) if pool.get("monitor") else None

    def _build(self, virtual: Mapping[str, Any], pools: dict[Key, ServedPool]) -> ServedVirtual | None:
        """`virtual` with what it uses resolved, noting what it was built from; None (with a warning) if its
        configuration cannot be served. A missing pool gives a virtual (or rule) without pool; a missing
        monitor, a pool without monitor; a missing certificate, none."""
        key = _key(virtual)
        partition = key[0]
        uses: set[Dependency] = set()

        def pool_of(reference: str | None) -> ServedPool | None:
            if not reference:
                return None
            pool_key = resolve_reference(partition, reference)
            uses.add((Pool.kind, pool_key))
            pool = self.objects[Pool.kind].get(pool_key)
            if pool is None:
                return None
            monitor_key = self._monitor_key(pool_key, pool)
            ca_reference = (pool.get("tls") or {}).get("ca")
            ca_key = resolve_reference(pool_key[0], ca_reference) if ca_reference else None
            if monitor_key is not None:
                uses.add((Monitor.kind, monitor_key))
            if ca_key is not None:
                uses.add((Certificate.kind, ca_key))
            if pool_key not in pools:
                monitor = self.objects[Monitor.kind].get(monitor_key) if monitor_key else None
                ca = self.objects[Certificate.kind].get(ca_key) if ca_key else None
                pools[pool_key] = served_pool(pool, monitor, ca)
            return pools[pool_key]

        try:
            pool = pool_of(virtual.get("pool"))
            rule_pools = [pool_of(rule.get("pool")) for rule in virtual.get("rules") or ()]
            certificates = []
            for reference in virtual.get("certificates") or ():
                certificate_key = resolve_reference(partition, reference)
                uses.add((Certificate.kind, certificate_key))
                certificate = self.objects[Certificate.kind].get(certificate_key)
                if certificate is not None and certificate.get("key"):
                    certificates.append(ServedCertificate(*certificate_key, certificate["certificate"],
                                                          certificate["key"]))
            served = served_from_config(virtual, None, None, rule_pools, certificates)
            built: ServedVirtual | None = dataclasses.replace(
                served, pool=pool, snat_address=self._snat_address(served) if served.snat == "automap" else None)
        except (KeyError, TypeError, ValueError) as error:  # one bad object must not stop the others
            log.warning("virtual server /%s/%s not served: bad configuration: %r", partition,
                        virtual.get("name"), error)
            built = None
        for dependency in self._uses.get(key, set()) - uses:
            self._users[dependency].discard(key)
        for dependency in uses:
            self._users[dependency].add(key)
        self._uses[key] = uses
        return built

    def _snat_address(self, virtual: ServedVirtual) -> str:
        """The source address of `virtual`'s connections to members with `snat` automap: its traffic group's
        first floating address of its family, else its own address."""
        family = ip_address(virtual.address).version
        floating = self.traffic_groups.get(virtual.traffic_group, ())
        return next((address for address in floating if ip_address(address).version == family), virtual.address)


def served_from_objects(virtuals: Iterable[Mapping[str, Any]], pools: Iterable[Mapping[str, Any]],
                        monitors: Iterable[Mapping[str, Any]], certificates: Iterable[Mapping[str, Any]] = (),
                        traffic_groups: Iterable[str] | None = None) -> list[ServedVirtual]:
    """The enabled virtual servers of `traffic_groups` (all when None), references resolved, from lists of
    virtuals, pools (members included), monitors and certificates (keys included) as the API returns them
    (`Catalog.served`)."""
    catalog = Catalog()
    catalog.update({"full": True, "traffic_groups": {}, "removed": {},
                    "put": {VirtualServer.kind: virtuals, Pool.kind: pools, Monitor.kind: monitors,
                            Certificate.kind: certificates}})
    groups = set(traffic_groups) if traffic_groups is not None else None
    return [virtual for virtual in catalog.served() if groups is None or virtual.traffic_group in groups]
