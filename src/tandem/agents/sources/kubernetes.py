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
from tandem.agents.service import Service
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
        from kubernetes.client import CoreV1Api, DiscoveryV1Api

        self._selection = selection
        self._member_mode = member_mode
        self._client = api_client
        self._core = CoreV1Api(api_client)
        self._discovery = DiscoveryV1Api(api_client)
        self._metrics = metrics
        self._lock = threading.Lock()
        self._raw: dict[str, dict[tuple[str, str], dict[str, Any]]] = {"services": {}, "endpointslices": {}}
        self._nodes: dict[str, Node] = {}
        self._built: dict[str, Service] = {}
        self._errors: dict[str, str] = {}
        self._changed: set[str] | None = None
        """Keys rebuilt since the agent last asked (None: all of them)."""
        self._stopping = threading.Event()
        self._events: dict[tuple[str, str, str, str], tuple[str, int]] = {}
        """The Events made, by (namespace, Service, reason, message): their names and counts, oldest first."""
        self._events_lock = threading.Lock()

    @property
    def services(self) -> dict[str, Service]:
        with self._lock:
            return dict(self._built)

    def take_changed(self) -> set[str] | None:
        """The keys of the Services changed since the last call (None: any may have, after a list)."""
        with self._lock:
            changed, self._changed = self._changed, set()
            return changed

    @property
    def errors(self) -> dict[str, str]:
        """Why Services are not served as they are now, by key."""
        with self._lock:
            return dict(self._errors)

    @property
    def present(self) -> set[str]:
        """Every Service for Tandem in the cluster (those with a problem too: their objects stay)."""
        with self._lock:
            return set(self._built) | set(self._errors)

    # -- following the cluster -----------------------------------------------------------------------

    async def run(self, changed: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()

        def notify() -> None:
            loop.call_soon_threadsafe(changed.set)

        selector = self._selection.selector
        if self._selection.namespaces:
            follows = [(resource, namespace, functools.partial(call, namespace, **extra))
                       for namespace in self._selection.namespaces
                       for resource, call, extra in (
                           ("services", self._core.list_namespaced_service, {"label_selector": selector}),
                           ("endpointslices", self._discovery.list_namespaced_endpoint_slice, {}))]
        else:
            follows = [("services", None, functools.partial(self._core.list_service_for_all_namespaces,
                                                            label_selector=selector)),
                       ("endpointslices", None, self._discovery.list_endpoint_slice_for_all_namespaces)]
        follows.append(("nodes", None, self._core.list_node))
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
            kept = {} if namespace is None else {k: v for k, v in self._raw[resource].items() if k[0] != namespace}
            self._raw[resource] = kept | {_name(i): i for i in items}
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
            if kind == "DELETED":
                self._raw[resource].pop(_name(item), None)
            else:
                self._raw[resource][_name(item)] = item
            service = (item.get("metadata") or {}).get("labels", {}).get(SERVICE_NAME_LABEL) \
                if resource == "endpointslices" else (item.get("metadata") or {}).get("name")
            self._rebuild((item.get("metadata", {}).get("namespace"), service))

    def _rebuild(self, only: tuple[str, str] | None) -> None:
        """Build the services again (all of them, or the one `only` names); under the lock."""
        slices: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for (namespace, _), item in self._raw["endpointslices"].items():
            name = ((item.get("metadata") or {}).get("labels") or {}).get(SERVICE_NAME_LABEL)
            if name and (only is None or only == (namespace, name)):
                slices.setdefault((namespace, name), []).append(item)
        names = [only] if only is not None else list(self._raw["services"])
        nodes = list(self._nodes.values())
        if only is None:
            self._built, self._errors, self._changed = {}, {}, None
        elif self._changed is not None:
            self._changed.add(f"{only[0]}/{only[1]}")
        for where in names:
            key = f"{where[0]}/{where[1]}"
            raw = self._raw["services"].get(where)
            if raw is None:
                self._built.pop(key, None)
                self._errors.pop(key, None)
                continue
            try:
                service = service_of(raw, slices.get(where, []), self._selection, nodes, self._member_mode)
            except ValueError as error:
                self._errors[key] = str(error)  # its last good form, if any, stays in _built
                continue
            self._errors.pop(key, None)
            if service is None:
                self._built.pop(key, None)
            else:
                self._built[key] = service

    # -- telling the cluster ---------------------------------------------------------------------------

    async def report(self, key: str, address: str | None, problem: str | None) -> None:
        """Write the address to the Service's status, or explain with an Event why it is not served."""
        await asyncio.to_thread(self._report, key, address, problem)

    def _report(self, key: str, address: str | None, problem: str | None) -> None:
        from kubernetes.client import ApiException

        namespace, _, name = key.partition("/")
        with contextlib.suppress(ApiException):
            if address is not None and problem is None:
                self._core.patch_namespaced_service_status(
                    name, namespace, {"status": {"loadBalancer": {"ingress": [{"ip": address}]}}})
                return
            self._warn(namespace, name, "TandemNotServed", problem or "not served")

    def _warn(self, namespace: str, name: str, reason: str, message: str) -> None:
        """A Warning Event on a Service; the same one again (same object, reason and message) counts up the
        Event already made (`count`, `lastTimestamp`), as Kubernetes' own event recorder does."""
        from kubernetes.client import ApiException

        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        key = (namespace, name, reason, message)
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
        created = self._core.create_namespaced_event(namespace, {
            "metadata": {"generateName": f"{name}.", "namespace": namespace},
            "involvedObject": {"kind": "Service", "namespace": namespace, "name": name, "apiVersion": "v1"},
            "reason": reason, "message": message, "type": "Warning", "source": {"component": "tandem-agent"},
            "firstTimestamp": now, "lastTimestamp": now, "count": 1})
        with self._events_lock:
            self._events[key] = (created.metadata.name, 1)
            while len(self._events) > EVENTS_REMEMBERED:
                self._events.pop(next(iter(self._events)))


def _name(item: dict[str, Any]) -> tuple[str, str]:
    metadata = item.get("metadata") or {}
    return metadata.get("namespace", ""), metadata.get("name", "")
