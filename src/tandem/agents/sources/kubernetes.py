"""The Kubernetes source: Services of type LoadBalancer (or carrying a `tandem.io/` annotation) and the
ready endpoints of their EndpointSlices, followed by list-then-watch with resource versions.

Each resource is listed once, then watched from the list's resourceVersion (bookmarks keep it fresh);
a watch that ends is started again from where it was, and only a `410 Gone` (or an error) makes the
source list again. Nothing is polled.

Annotations: `tandem.io/address` (else `spec.loadBalancerIP`; else an address from the pool of the
traffic group), `tandem.io/traffic-group`, `tandem.io/monitor` (`tcp` or `http`),
`tandem.io/monitor-path`, `tandem.io/monitor-interval` (seconds), `tandem.io/lb-method`. A Service
that cannot be served (an unknown annotation or protocol, a bad value) is reported with an Event and
skipped; if it was served before, its last good form stays.
"""

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from tandem.agents.metrics import Metrics
from tandem.agents.service import Service
from tandem.models.resources import DEFAULT_LB_METHOD, DEFAULT_TRAFFIC_GROUP

log = logging.getLogger("tandem.agent.kubernetes")

PREFIX = "tandem.io/"
ANNOTATIONS = {"address", "traffic-group", "monitor", "monitor-path", "monitor-interval", "lb-method"}
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
WATCH_SECONDS = 300
RETRY = 1.0


def _ready(endpoint: dict[str, Any]) -> bool:
    return (endpoint.get("conditions") or {}).get("ready") is not False


def service_of(service: dict[str, Any], slices: list[dict[str, Any]]) -> Service | None:
    """The service a Kubernetes Service asks for (None: not one for Tandem); ValueError naming what is wrong."""
    metadata, spec = service.get("metadata") or {}, service.get("spec") or {}
    annotations = {k.removeprefix(PREFIX): v for k, v in (metadata.get("annotations") or {}).items()
                   if k.startswith(PREFIX)}
    if spec.get("type") != "LoadBalancer" and not annotations:
        return None
    unknown = sorted(set(annotations) - ANNOTATIONS)
    if unknown:
        raise ValueError(f"unknown annotation {PREFIX}{unknown[0]}")
    ports = []
    for port in spec.get("ports") or []:
        protocol = port.get("protocol") or "TCP"
        if protocol != "TCP":
            raise ValueError(f"port {port.get('port')}: protocol {protocol} is not served (TCP only)")
        members = {(address, slice_port["port"])
                   for item in slices for slice_port in item.get("ports") or []
                   if (slice_port.get("name") or "") == (port.get("name") or "") and slice_port.get("port")
                   for endpoint in item.get("endpoints") or [] if _ready(endpoint)
                   for address in endpoint.get("addresses") or []}
        ports.append({"port": port.get("port"), "members": [{"address": a, "port": p} for a, p in sorted(members)]})
    monitor = None
    if "monitor" in annotations:
        monitor = {"type": annotations["monitor"]}
        if "monitor-path" in annotations:
            monitor["path"] = annotations["monitor-path"]
        if "monitor-interval" in annotations:
            monitor["interval"] = annotations["monitor-interval"]
    try:
        return Service.model_validate({
            "key": f"{metadata.get('namespace')}/{metadata.get('name')}",
            "address": annotations.get("address") or spec.get("loadBalancerIP") or None,
            "traffic_group": annotations.get("traffic-group", DEFAULT_TRAFFIC_GROUP), "ports": ports,
            "monitor": monitor, "lb_method": annotations.get("lb-method", DEFAULT_LB_METHOD)})
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"{where}: {first['msg']}") from None


class KubernetesSource:
    """Services wanted by a Kubernetes cluster, kept up to date by watches."""

    kind = "kubernetes"

    def __init__(self, api_client: Any, metrics: Metrics) -> None:
        from kubernetes.client import CoreV1Api, DiscoveryV1Api

        self._client = api_client
        self._core = CoreV1Api(api_client)
        self._discovery = DiscoveryV1Api(api_client)
        self._metrics = metrics
        self._lock = threading.Lock()
        self._raw: dict[str, dict[tuple[str, str], dict[str, Any]]] = {"services": {}, "endpointslices": {}}
        self._built: dict[str, Service] = {}
        self._errors: dict[str, str] = {}
        self._changed: set[str] | None = None
        """Keys rebuilt since the agent last asked (None: all of them)."""
        self._stopping = threading.Event()
        self._failure: BaseException | None = None

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

        follows = [("services", self._core.list_service_for_all_namespaces),
                   ("endpointslices", self._discovery.list_endpoint_slice_for_all_namespaces)]
        for resource, call in follows:
            threading.Thread(target=self._follow, args=(resource, call, notify), name=f"watch-{resource}",
                             daemon=True).start()
        try:
            await asyncio.Event().wait()  # the watches run in their threads until the agent stops
        finally:
            self._stopping.set()

    def _follow(self, resource: str, call: Callable[..., Any], notify: Callable[[], None]) -> None:
        from kubernetes import watch
        from kubernetes.client import ApiException

        while not self._stopping.is_set():
            try:
                listing = call()
                self._replace(resource, [self._client.sanitize_for_serialization(i) for i in listing.items])
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

    def _replace(self, resource: str, items: list[dict[str, Any]]) -> None:
        with self._lock:
            self._raw[resource] = {_name(i): i for i in items}
            self._rebuild(None)

    def _apply(self, resource: str, kind: str, item: dict[str, Any]) -> None:
        with self._lock:
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
                service = service_of(raw, slices.get(where, []))
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
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            self._core.create_namespaced_event(namespace, {
                "metadata": {"generateName": f"{name}.", "namespace": namespace},
                "involvedObject": {"kind": "Service", "namespace": namespace, "name": name, "apiVersion": "v1"},
                "reason": "TandemNotServed", "message": problem or "not served", "type": "Warning",
                "source": {"component": "tandem-agent"}, "firstTimestamp": now, "lastTimestamp": now, "count": 1})


def _name(item: dict[str, Any]) -> tuple[str, str]:
    metadata = item.get("metadata") or {}
    return metadata.get("namespace", ""), metadata.get("name", "")
