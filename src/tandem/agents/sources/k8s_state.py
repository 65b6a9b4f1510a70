"""What the Kubernetes source knows of the cluster, and the services built from it: Services, EndpointSlices,
Nodes, TLS Secrets, Ingresses and IngressClasses, Gateways, HTTPRoutes and GatewayClasses, as the watches
deliver them (thread-safe). A change rebuilds only the services built from the object changed (each service
records what it was built from); a change of Nodes or classes rebuilds everything.

A service that cannot be served (a bad annotation, a Gateway with no listener to serve) is kept in `errors`;
if it was served before, its last good form stays in `services`.
"""

import threading
from typing import Any

from tandem.agents.service import Service, TlsPair
from tandem.agents.sources.k8s_gateway import (
    GATEWAY_PREFIX,
    GatewayBuild,
    gateway_key,
    gateway_service,
    parents_of,
    tandem_gateway_classes,
)
from tandem.agents.sources.k8s_ingress import (
    INGRESS_PREFIX,
    ClusterView,
    ObjectName,
    claims,
    group_key,
    ingress_service,
    references,
    tandem_classes,
    tls_pair,
)
from tandem.agents.sources.k8s_services import SERVICE_NAME_LABEL, Node, Selection, node_of, service_of

Reference = tuple[str, str, str]
"""(resource, namespace, name) of an object a service is built from."""
RAW = ("services", "endpointslices", "ingresses", "ingressclasses", "gateways", "httproutes", "gatewayclasses")
"""The resources kept as the API serves them (Secrets are kept checked, Nodes as `Node`)."""
CLASSES = ("ingressclasses", "gatewayclasses")


class ClusterState:
    """The objects the watches delivered and the services built from them."""

    def __init__(self, selection: Selection, member_mode: str) -> None:
        self._selection = selection
        self._member_mode = member_mode
        self._lock = threading.Lock()
        self._raw: dict[str, dict[ObjectName, dict[str, Any]]] = {resource: {} for resource in RAW}
        self._slices: dict[ObjectName, dict[ObjectName, dict[str, Any]]] = {}
        """EndpointSlices by their Service."""
        self._secrets: dict[ObjectName, TlsPair | str] = {}
        """TLS Secrets, checked."""
        self._nodes: dict[str, Node] = {}
        self._ingress_classes: tuple[frozenset[str], bool] = (frozenset(), False)
        self._gateway_classes: frozenset[str] = frozenset()
        self._groups: dict[str, set[ObjectName]] = {}
        """The Ingresses of each ingress service (those of Tandem's classes)."""
        self._group_of: dict[ObjectName, str] = {}
        self._routes_to: dict[ObjectName, set[ObjectName]] = {}
        """The HTTPRoutes naming each Gateway as a parent."""
        self._gateways: dict[str, GatewayBuild] = {}
        self._from: dict[str, set[Reference]] = {}
        """What each service was built from."""
        self._into: dict[Reference, set[str]] = {}
        """The services each object went into."""
        self._built: dict[str, Service] = {}
        self._errors: dict[str, str] = {}
        self._errors_seen: dict[str, str] = {}
        """A copy of `_errors` as of the last rebuild, replaced (never changed)."""
        self._services_seen: dict[str, Service] | None = None
        """A copy of `_built` as of the last `take_changed`, replaced (never changed); None: none taken yet."""
        self._present_seen: frozenset[str] = frozenset()
        """The keys of `_built` and `_errors` as of the last `take_changed`."""
        self._changed: set[str] | None = None
        """Keys rebuilt since the agent last asked (None: all of them)."""

    # -- what the source answers -------------------------------------------------------------------

    # The agent reads these on its event loop, where it also renews its lease: they never wait for the lock,
    # which a rebuild of 10,000 services holds for seconds (waiting for it, an agent that had just joined let its
    # lease run out, bench/agent.py, agent_takeover_s). They answer from copies taken when the lock was free.

    @property
    def services(self) -> dict[str, Service]:
        """The services as of the last `take_changed` (not to be changed)."""
        return self._services_seen or {}

    @property
    def errors(self) -> dict[str, str]:
        """The services that cannot be served, and why, as of the last rebuild (not to be changed)."""
        return self._errors_seen

    @property
    def present(self) -> set[str]:
        """Every service for Tandem, those with a problem too, as of the last `take_changed`."""
        return set(self._present_seen)

    def take_changed(self) -> set[str] | None:
        """The keys of the services rebuilt since the last call (None: any may have), and the services as they
        are now kept for `services` and `present`: one picture. While a rebuild holds the lock, nothing changed
        yet (what it changes is told when it is done), except on the first call, which waits: no picture is
        older than the first."""
        if not self._lock.acquire(blocking=self._services_seen is None):
            return set()
        try:
            changed, self._changed = self._changed, set()
            self._services_seen = dict(self._built)
            self._present_seen = frozenset(self._built.keys() | self._errors.keys())
            return changed
        finally:
            self._lock.release()

    def ingresses_of(self, key: str) -> list[ObjectName]:
        """The Ingresses an ingress service is built from."""
        with self._lock:
            return sorted(self._groups.get(key, ()))

    def gateway(self, key: str) -> tuple[dict[str, Any] | None, GatewayBuild | None]:
        """A Gateway as the API has it, and as it was last built."""
        namespace, _, name = key.removeprefix(GATEWAY_PREFIX).partition("/")
        with self._lock:
            return self._raw["gateways"].get((namespace, name)), self._gateways.get(key)

    def gateway_class_of(self, gateway: dict[str, Any]) -> dict[str, Any] | None:
        """The GatewayClass of a Gateway, if it is one of Tandem's."""
        name = (gateway.get("spec") or {}).get("gatewayClassName")
        with self._lock:
            return self._raw["gatewayclasses"].get(("", name)) if name in self._gateway_classes else None

    # -- what the watches deliver ------------------------------------------------------------------

    def replace(self, resource: str, namespace: str | None, items: list[dict[str, Any]]) -> None:
        """A new listing of `resource` in `namespace` (None: all of them) replaces what was known there."""
        with self._lock:
            if resource == "nodes":
                nodes = {node.name: node for node in map(node_of, items)}
                if nodes != self._nodes:
                    self._nodes = nodes
                    self._rebuild(None)
                return
            known = self._secrets if resource == "secrets" else self._raw[resource]
            for name in [name for name in known if namespace is None or name[0] == namespace]:
                self._forget(resource, name)
            for item in items:
                self._store(resource, item)
            self._rebuild(None)

    def apply(self, resource: str, kind: str, item: dict[str, Any]) -> None:
        """A watch event (`ADDED`, `MODIFIED`, `DELETED`)."""
        with self._lock:
            if resource == "nodes":
                node = node_of(item)
                if kind == "DELETED" and self._nodes.pop(node.name, None) is not None:
                    self._rebuild(None)
                elif kind != "DELETED" and self._nodes.get(node.name) != node:
                    self._nodes[node.name] = node
                    self._rebuild(None)
                return
            name = _name(item)
            if kind == "MODIFIED" and _same_but_status(self._raw.get(resource, {}).get(name), item):
                self._raw[resource][name] = item  # its newest resourceVersion (the status writer reads it)
                return
            affected = self._affected(resource, name)  # what was built from it as it was
            if kind == "DELETED":
                self._forget(resource, name)
            else:
                self._store(resource, item)
            if resource not in CLASSES:
                self._rebuild(affected | self._affected(resource, name))
            elif self._classes() != (self._ingress_classes, self._gateway_classes):
                self._rebuild(None)

    def _store(self, resource: str, item: dict[str, Any]) -> None:
        name = _name(item)
        self._forget(resource, name)
        if resource == "secrets":
            self._secrets[name] = tls_pair(item)
            return
        self._raw[resource][name] = item
        if resource == "endpointslices":
            self._slices.setdefault((name[0], _service_of_slice(item)), {})[name] = item
        elif resource == "ingresses":
            self._group(name)
        elif resource == "httproutes":
            for parent, _ in parents_of(item):
                self._routes_to.setdefault(parent, set()).add(name)

    def _forget(self, resource: str, name: ObjectName) -> None:
        if resource == "secrets":
            self._secrets.pop(name, None)
            return
        item = self._raw[resource].pop(name, None)
        if item is None:
            return
        if resource == "endpointslices":
            _discard(self._slices, (name[0], _service_of_slice(item)), name)
        elif resource == "ingresses" and name in self._group_of:
            _discard(self._groups, self._group_of.pop(name), name)
        elif resource == "httproutes":
            for parent, _ in parents_of(item):
                _discard(self._routes_to, parent, name)

    def _group(self, name: ObjectName) -> None:
        """Put a stored Ingress in its service, if it is of Tandem's classes and selected."""
        ingress = self._raw["ingresses"][name]
        if claims(ingress, *self._ingress_classes) and self._selection.labelled(ingress):
            key = self._group_of[name] = group_key(ingress)
            self._groups.setdefault(key, set()).add(name)

    def _affected(self, resource: str, name: ObjectName) -> set[str]:
        """The keys of the services built from an object, or that it names (as it is known now)."""
        keys = set(self._into.get((resource, *name), ()))
        if resource == "ingresses" and name in self._group_of:
            keys.add(self._group_of[name])
        elif resource == "gateways":
            keys.add(gateway_key(*name))
        elif resource == "httproutes" and name in self._raw["httproutes"]:
            keys |= {gateway_key(*parent) for parent, _ in parents_of(self._raw["httproutes"][name])}
        elif resource == "endpointslices" and name in self._raw["endpointslices"]:
            return self._affected("services", (name[0], _service_of_slice(self._raw["endpointslices"][name])))
        elif resource == "services":
            keys.add(f"{name[0]}/{name[1]}")
        return keys

    # -- building services (under the lock) -----------------------------------------------------------

    def _rebuild(self, only: set[str] | None) -> None:
        """Build the services again: all of them, or those `only` names."""
        if only is None:
            self._ingress_classes, self._gateway_classes = self._classes()
            self._groups, self._group_of = {}, {}
            for name in self._raw["ingresses"]:
                self._group(name)
            self._errors, self._changed, self._gateways, self._from, self._into = {}, None, {}, {}, {}
            only = ({f"{namespace}/{name}" for namespace, name in self._raw["services"]} | set(self._groups)
                    | {gateway_key(*name) for name in self._raw["gateways"]})
            for gone in self._built.keys() - only:  # the others keep their last good form if now bad
                del self._built[gone]
        elif self._changed is not None:
            self._changed |= only
        view = ClusterView(self._raw["services"], self._slices, list(self._nodes.values()), self._secrets,
                           self._member_mode)
        for key in only:
            try:
                service = self._build(key, view)
            except ValueError as error:
                self._errors[key] = str(error)  # its last good form, if any, stays in _built
                continue
            self._errors.pop(key, None)
            if service is None:
                self._built.pop(key, None)
            else:
                self._built[key] = service
        if self._errors != self._errors_seen:
            self._errors_seen = dict(self._errors)

    def _classes(self) -> tuple[tuple[frozenset[str], bool], frozenset[str]]:
        """Tandem's IngressClasses (and whether one is the default) and GatewayClasses, as the cluster has them."""
        return (tandem_classes(self._raw["ingressclasses"].values()),
                tandem_gateway_classes(self._raw["gatewayclasses"].values()))

    def _build(self, key: str, view: ClusterView) -> Service | None:
        """The service `key` names as the cluster has it now (None: none for Tandem); ValueError if bad."""
        built_from: set[Reference] = set()
        try:
            if key.startswith(INGRESS_PREFIX):
                members = [self._raw["ingresses"][name] for name in sorted(self._groups.get(key, ()))]
                for ingress in members:
                    built_from |= references(ingress)
                return ingress_service(key, members, view) if members else None
            if key.startswith(GATEWAY_PREFIX):
                return self._build_gateway(key, view, built_from)
            namespace, _, name = key.partition("/")
            raw = self._raw["services"].get((namespace, name))
            return service_of(raw, list(self._slices.get((namespace, name), {}).values()), self._selection,
                              view.nodes, self._member_mode) if raw else None
        finally:
            self._built_from(key, built_from)

    def _build_gateway(self, key: str, view: ClusterView, built_from: set[Reference]) -> Service | None:
        namespace, _, name = key.removeprefix(GATEWAY_PREFIX).partition("/")
        gateway = self._raw["gateways"].get((namespace, name))
        if (gateway is None or (gateway.get("spec") or {}).get("gatewayClassName") not in self._gateway_classes
                or not self._selection.labelled(gateway)):
            self._gateways.pop(key, None)
            return None
        routes = [self._raw["httproutes"][route] for route in sorted(self._routes_to.get((namespace, name), ()))]
        build = self._gateways[key] = gateway_service(key, gateway, routes, view)
        built_from |= build.references
        if build.service is None:
            raise ValueError(build.problem or "nothing of it can be served")
        return build.service

    def _built_from(self, key: str, references: set[Reference]) -> None:
        for reference in self._from.pop(key, set()) - references:
            _discard(self._into, reference, key)
        for reference in references:
            self._into.setdefault(reference, set()).add(key)
        if references:
            self._from[key] = references


def _discard(index: dict[Any, Any], key: Any, value: Any) -> None:
    """Take `value` out of `index[key]` (a set, or a dict by key), and that out of the index once empty."""
    values = index.get(key)
    if values is not None:
        if isinstance(values, dict):
            values.pop(value, None)
        else:
            values.discard(value)
        if not values:
            del index[key]


def _name(item: dict[str, Any]) -> ObjectName:
    metadata = item.get("metadata") or {}
    return metadata.get("namespace", ""), metadata.get("name", "")


def _service_of_slice(item: dict[str, Any]) -> str:
    return ((item.get("metadata") or {}).get("labels") or {}).get(SERVICE_NAME_LABEL) or ""


VERSION_FIELDS = ("resourceVersion", "managedFields")
"""What of an object's metadata changes when its status is written."""


def _same_but_status(known: dict[str, Any] | None, item: dict[str, Any]) -> bool:
    """Whether `item` differs from the object as it was `known` only in its status (and its version): the
    statuses the agent writes come back as such events (11,000 after an initial load, bench/agent.py), and each
    rebuilt its service and planned it again for nothing. Nothing is built from a status but a Node's."""
    if known is None:
        return False

    def without_status(obj: dict[str, Any]) -> dict[str, Any]:
        metadata = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in VERSION_FIELDS}
        return {**{k: v for k, v in obj.items() if k != "status"}, "metadata": metadata}

    return without_status(known) == without_status(item)
