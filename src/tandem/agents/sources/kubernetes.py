"""The Kubernetes source: Services of type LoadBalancer of the agent's class (`Selection`) and the ready
endpoints of their EndpointSlices, followed by list-then-watch with resource versions.

Each resource is listed once, then watched from the list's resourceVersion (bookmarks keep it fresh);
a watch that ends is started again from where it was, and only a `410 Gone` (or an error) makes the
source list again. Nothing is polled.

What a Service asks for is `k8s_services`'s to say. A Service that cannot be served (an unknown annotation
or protocol, a bad value) is reported with an Event and skipped; if it was served before, its last good
form stays. Nodes are followed too (member mode `nodeport`): a change of a node that does not change what
`k8s_services` reads of it rebuilds nothing.
"""

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from tandem.agents.metrics import Metrics
from tandem.agents.service import Report, Service, TlsPair
from tandem.agents.sources.k8s_ingress import (
    INGRESS_PREFIX,
    TLS_SECRET,
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

log = logging.getLogger("tandem.agent.kubernetes")
WATCH_SECONDS = 300
RETRY = 1.0
EVENTS_REMEMBERED = 4096
"""Events counted up when they happen again (the least recent forgotten first), as client-go's recorder."""


class KubernetesSource:
    """Services wanted by a Kubernetes cluster, kept up to date by watches."""

    kind = "kubernetes"

    def __init__(self, api_client: Any, metrics: Metrics, selection: Selection = Selection(),
                 member_mode: str = "endpoints") -> None:
        from kubernetes.client import CoreV1Api, DiscoveryV1Api, NetworkingV1Api

        self._selection = selection
        self._member_mode = member_mode
        self._client = api_client
        self._core = CoreV1Api(api_client)
        self._discovery = DiscoveryV1Api(api_client)
        self._networking = NetworkingV1Api(api_client)
        self._metrics = metrics
        self._lock = threading.Lock()
        self._raw: dict[str, dict[ObjectName, dict[str, Any]]] = {
            "services": {}, "endpointslices": {}, "ingresses": {}, "ingressclasses": {}}
        self._slices: dict[ObjectName, dict[ObjectName, dict[str, Any]]] = {}
        """EndpointSlices by their Service."""
        self._secrets: dict[ObjectName, TlsPair | str] = {}
        """TLS Secrets, checked."""
        self._nodes: dict[str, Node] = {}
        self._classes: tuple[frozenset[str], bool] = (frozenset(), False)
        self._groups: dict[str, set[ObjectName]] = {}
        """The Ingresses of each ingress service (those of Tandem's classes)."""
        self._group_of: dict[ObjectName, str] = {}
        self._referring: dict[tuple[str, str, str], set[ObjectName]] = {}
        """The Ingresses referring to each Service and Secret: (resource, namespace, name) -> Ingresses."""
        self._built: dict[str, Service] = {}
        self._errors: dict[str, str] = {}
        self._changed: set[str] | None = None
        """Keys rebuilt since the agent last asked (None: all of them)."""
        self._stopping = threading.Event()
        self._events: dict[tuple[str, str, str, str, str], tuple[str, int]] = {}
        """The Events made, by (kind, namespace, name, reason, message): their names and counts, oldest first."""
        self._events_lock = threading.Lock()

    @property
    def services(self) -> dict[str, Service]:
        with self._lock:
            return dict(self._built)

    def take_changed(self) -> set[str] | None:
        """The keys of the services changed since the last call (None: any may have, after a list)."""
        with self._lock:
            changed, self._changed = self._changed, set()
            return changed

    @property
    def errors(self) -> dict[str, str]:
        """Why services are not served as they are now, by key."""
        with self._lock:
            return dict(self._errors)

    @property
    def present(self) -> set[str]:
        """Every service for Tandem in the cluster (those with a problem too: their objects stay)."""
        with self._lock:
            return set(self._built) | set(self._errors)

    # -- following the cluster -----------------------------------------------------------------------

    async def run(self, changed: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()

        def notify() -> None:
            loop.call_soon_threadsafe(changed.set)

        core, discovery, networking = self._core, self._discovery, self._networking
        tls = {"field_selector": f"type={TLS_SECRET}"}
        per_namespace = (("services", core.list_namespaced_service, core.list_service_for_all_namespaces, {}),
                         ("endpointslices", discovery.list_namespaced_endpoint_slice,
                          discovery.list_endpoint_slice_for_all_namespaces, {}),
                         ("ingresses", networking.list_namespaced_ingress,
                          networking.list_ingress_for_all_namespaces, {}),
                         ("secrets", core.list_namespaced_secret, core.list_secret_for_all_namespaces, tls))
        if self._selection.namespaces:
            follows = [(resource, namespace, functools.partial(namespaced, namespace, **extra))
                       for namespace in self._selection.namespaces
                       for resource, namespaced, _, extra in per_namespace]
        else:
            follows = [(resource, None, functools.partial(everywhere, **extra))
                       for resource, _, everywhere, extra in per_namespace]
        follows += [("nodes", None, core.list_node), ("ingressclasses", None, networking.list_ingress_class)]
        for resource, namespace, call in follows:
            threading.Thread(target=self._follow, args=(resource, namespace, call, notify),
                             name=f"watch-{resource}-{namespace or 'all'}", daemon=True).start()
        try:
            await asyncio.Event().wait()  # the watches run in their threads until the agent stops
        finally:
            self._stopping.set()

    def _follow(self, resource: str, namespace: str | None, call: Callable[..., Any],
                notify: Callable[[], None]) -> None:
        """List then watch `resource` (in `namespace`, or all) until the agent stops."""
        from kubernetes import watch
        from kubernetes.client import ApiException

        while not self._stopping.is_set():
            try:
                listing = call()
                self._replace(resource, namespace,
                              [self._client.sanitize_for_serialization(i) for i in listing.items])
                notify()
                version = listing.metadata.resource_version
                while not self._stopping.is_set():
                    stream = watch.Watch()
                    for event in stream.stream(call, resource_version=version, allow_watch_bookmarks=True,
                                               timeout_seconds=WATCH_SECONDS):
                        if event["type"] != "BOOKMARK":
                            self._apply(resource, event["type"], self._client.sanitize_for_serialization(
                                event["object"]))
                            notify()
                        version = stream.resource_version or version
            except ApiException as error:
                self._metrics.watch_restarts.labels(resource).inc()
                if error.status == 410:
                    log.info("the watch of %s expired (410 Gone): listing again", resource)
                else:
                    log.warning("watching %s failed (%s): listing again", resource, error.reason)
                    time.sleep(RETRY)
            except Exception as error:  # the API server went away, a connection broke: list again
                self._metrics.watch_restarts.labels(resource).inc()
                log.warning("watching %s failed (%s): listing again", resource, error)
                time.sleep(RETRY)

    def _replace(self, resource: str, namespace: str | None, items: list[dict[str, Any]]) -> None:
        """A new listing of `resource` in `namespace` (None: all of them) replaces what was known there."""
        with self._lock:
            if resource == "nodes":
                nodes = {node.name: node for node in map(node_of, items)}
                if nodes != self._nodes:
                    self._nodes = nodes
                    self._rebuild(None)
                return
            for name in [name for name in self._known(resource) if namespace is None or name[0] == namespace]:
                self._forget(resource, name)
            for item in items:
                self._store(resource, item)
            self._rebuild(None)

    def _apply(self, resource: str, kind: str, item: dict[str, Any]) -> None:
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
            affected = self._affected(resource, name)  # what refers to it as it was
            if kind == "DELETED":
                self._forget(resource, name)
            else:
                self._store(resource, item)
            if resource == "ingressclasses":
                self._rebuild(None)
                return
            self._rebuild(affected | self._affected(resource, name))  # and as it is

    # -- what is known (under the lock) ----------------------------------------------------------------

    def _known(self, resource: str) -> list[ObjectName]:
        return list(self._secrets if resource == "secrets" else self._raw[resource])

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

    def _forget(self, resource: str, name: ObjectName) -> None:
        if resource == "secrets":
            self._secrets.pop(name, None)
            return
        item = self._raw[resource].pop(name, None)
        if item is None:
            return
        if resource == "endpointslices":
            service = (name[0], _service_of_slice(item))
            self._slices.get(service, {}).pop(name, None)
            if not self._slices.get(service, True):
                del self._slices[service]
        elif resource == "ingresses":
            self._ungroup(name, item)

    def _group(self, name: ObjectName) -> None:
        """Put a stored Ingress in its service, if it is of Tandem's classes and selected."""
        ingress = self._raw["ingresses"][name]
        if not claims(ingress, *self._classes) or not self._selection.labelled(ingress):
            return
        key = self._group_of[name] = group_key(ingress)
        self._groups.setdefault(key, set()).add(name)
        for reference in references(ingress):
            self._referring.setdefault(reference, set()).add(name)

    def _ungroup(self, name: ObjectName, ingress: dict[str, Any]) -> None:
        key = self._group_of.pop(name, None)
        if key is None:
            return
        self._groups[key].discard(name)
        if not self._groups[key]:
            del self._groups[key]
        for reference in references(ingress):
            self._referring.get(reference, set()).discard(name)

    def _affected(self, resource: str, name: ObjectName) -> set[str]:
        """The keys of the services built from an object (as it is known now)."""
        if resource == "ingresses":
            return {self._group_of[name]} if name in self._group_of else set()
        if resource == "endpointslices":
            item = self._raw["endpointslices"].get(name)
            if item is None:
                return set()
            resource, name = "services", (name[0], _service_of_slice(item))
        keys = {f"{name[0]}/{name[1]}"} if resource == "services" else set()
        return keys | {self._group_of[i] for i in self._referring.get((resource, *name), ()) if i in self._group_of}

    # -- building services (under the lock) -------------------------------------------------------------

    def _rebuild(self, only: set[str] | None) -> None:
        """Build the services again: all of them, or those `only` names."""
        if only is None:
            self._classes = tandem_classes(self._raw["ingressclasses"].values())
            self._groups, self._group_of, self._referring = {}, {}, {}
            for name in self._raw["ingresses"]:
                self._group(name)
            self._built, self._errors, self._changed = {}, {}, None
            only = {f"{namespace}/{name}" for namespace, name in self._raw["services"]} | set(self._groups)
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

    def _build(self, key: str, view: ClusterView) -> Service | None:
        """The service `key` names as the cluster has it now (None: not one for Tandem); ValueError if bad."""
        if key.startswith(INGRESS_PREFIX):
            members = self._groups.get(key)
            return ingress_service(key, [self._raw["ingresses"][name] for name in members], view) if members else None
        namespace, _, name = key.partition("/")
        raw = self._raw["services"].get((namespace, name))
        if raw is None:
            return None
        return service_of(raw, list(self._slices.get((namespace, name), {}).values()), self._selection,
                          view.nodes, self._member_mode)

    # -- telling the cluster ---------------------------------------------------------------------------

    async def report(self, key: str, report: Report) -> None:
        """Write the address to the status of the Service (or of each Ingress of the service), or explain
        with an Event why it is not served; warnings are Events on the objects they concern."""
        await asyncio.to_thread(self._report, key, report)

    def _report(self, key: str, report: Report) -> None:
        from kubernetes.client import ApiException

        kind = "Ingress" if key.startswith(INGRESS_PREFIX) else "Service"
        if kind == "Ingress":
            with self._lock:
                objects = sorted(self._groups.get(key, ()))
        else:
            objects = [tuple(key.split("/", 1))]
        status = {"status": {"loadBalancer": {"ingress": [{"ip": report.address}]}}}
        for namespace, name in objects:
            with contextlib.suppress(ApiException):
                if report.address is not None and report.problem is None:
                    if kind == "Ingress":
                        self._networking.patch_namespaced_ingress_status(name, namespace, status)
                    else:
                        self._core.patch_namespaced_service_status(name, namespace, status)
                else:
                    self._warn(kind, namespace, name, "TandemNotServed", report.problem or "not served")
        for owner, message in report.warnings:
            namespace, _, name = owner.partition("/")
            with contextlib.suppress(ApiException):
                self._warn(kind, namespace, name, "TandemWarning", message)

    def _warn(self, kind: str, namespace: str, name: str, reason: str, message: str) -> None:
        """A Warning Event on a Service or an Ingress; the same one again (same object, reason and message)
        counts up the Event already made (`count`, `lastTimestamp`), as Kubernetes' own event recorder does."""
        from kubernetes.client import ApiException

        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        key = (kind, namespace, name, reason, message)
        with self._events_lock:
            seen = self._events.pop(key, None)
        if seen is not None:
            event, count = seen
            try:
                self._core.patch_namespaced_event(event, namespace, {"count": count + 1, "lastTimestamp": now})
                with self._events_lock:
                    self._events[key] = (event, count + 1)
                return
            except ApiException as error:
                if error.status != 404:  # gone (Events expire): make it anew
                    raise
        api_version = "networking.k8s.io/v1" if kind == "Ingress" else "v1"
        created = self._core.create_namespaced_event(namespace, {
            "metadata": {"generateName": f"{name}.", "namespace": namespace},
            "involvedObject": {"kind": kind, "namespace": namespace, "name": name, "apiVersion": api_version},
            "reason": reason, "message": message, "type": "Warning", "source": {"component": "tandem-agent"},
            "firstTimestamp": now, "lastTimestamp": now, "count": 1})
        with self._events_lock:
            self._events[key] = (created.metadata.name, 1)
            while len(self._events) > EVENTS_REMEMBERED:
                self._events.pop(next(iter(self._events)))


def _name(item: dict[str, Any]) -> ObjectName:
    metadata = item.get("metadata") or {}
    return metadata.get("namespace", ""), metadata.get("name", "")


def _service_of_slice(item: dict[str, Any]) -> str:
    return ((item.get("metadata") or {}).get("labels") or {}).get(SERVICE_NAME_LABEL) or ""
