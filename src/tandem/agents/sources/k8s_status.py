"""What the Kubernetes source writes back: the address in the status of a Service or of the Ingresses of a
service, a Gateway's status (addresses, conditions, listeners), its routes' conditions under their parent
entries (those of other Gateways and other controllers left as they are), its GatewayClass accepted, and
Events on what is not served or is served with a warning (counted up when they come again, as Kubernetes'
own event recorder does). Blocking calls of the official client: run them off the event loop."""

import contextlib
import threading
import time
from typing import Any

from tandem.agents.service import Report
from tandem.agents.sources.k8s_gateway import (
    GATEWAY_CONTROLLER,
    GATEWAY_PREFIX,
    GROUP,
    SUPPORTED_KINDS,
    Condition,
    GatewayBuild,
)
from tandem.agents.sources.k8s_ingress import INGRESS_PREFIX, ObjectName
from tandem.agents.sources.k8s_state import ClusterState

EVENTS_REMEMBERED = 4096
"""Events counted up when they happen again (the least recent forgotten first), as client-go's recorder."""
CONFLICT_RETRIES = 5
"""Attempts at a route's status when other writers change it meanwhile (409 Conflict)."""


class StatusWriter:
    """Writes what the agent has to tell about its services to the objects they come from."""

    def __init__(self, api_client: Any, state: ClusterState) -> None:
        from kubernetes.client import CoreV1Api, CustomObjectsApi, NetworkingV1Api

        self._core = CoreV1Api(api_client)
        self._networking = NetworkingV1Api(api_client)
        self._custom = CustomObjectsApi(api_client)
        self._state = state
        self._events: dict[tuple[str, str, str, str, str], tuple[str, int]] = {}
        """The Events made, by (kind, namespace, name, reason, message): their names and counts, oldest first."""
        self._events_lock = threading.Lock()
        """Reports are written from several threads at once."""
        self._accepted_classes: set[tuple[str, int | None]] = set()
        """The GatewayClasses (name, generation) said to be accepted."""

    def report(self, key: str, report: Report) -> None:
        from kubernetes.client import ApiException

        if key.startswith(GATEWAY_PREFIX):
            with contextlib.suppress(ApiException):
                self._gateway(key, report)
            return
        kind = "Ingress" if key.startswith(INGRESS_PREFIX) else "Service"
        objects = self._state.ingresses_of(key) if kind == "Ingress" else [tuple(key.split("/", 1))]
        status = {"status": {"loadBalancer": {"ingress": [{"ip": report.address}]}}}
        for namespace, name in objects:
            with contextlib.suppress(ApiException):
                if report.address is not None and report.problem is None:
                    # the answer read raw (not made into the client's models, which took most of the time
                    # of reporting on 11,000 services: bench/agent.py)
                    if kind == "Ingress":
                        self._networking.patch_namespaced_ingress_status(name, namespace, status,
                                                                         _preload_content=False).read()
                    else:
                        self._core.patch_namespaced_service_status(name, namespace, status,
                                                                   _preload_content=False).read()
                else:
                    self.warn(kind, namespace, name, "TandemNotServed", report.problem or "not served")
        for owner, message in report.warnings:
            namespace, _, name = owner.partition("/")
            with contextlib.suppress(ApiException):
                self.warn(kind, namespace, name, "TandemWarning", message)

    # -- Gateway API -------------------------------------------------------------------------------------

    def _gateway(self, key: str, report: Report) -> None:
        gateway, build = self._state.gateway(key)
        if gateway is None or build is None:
            return
        metadata = gateway.get("metadata") or {}
        namespace, name, generation = metadata.get("namespace"), metadata.get("name"), metadata.get("generation")
        self._accept_class(self._state.gateway_class_of(gateway))
        served = report.address is not None and report.problem is None
        programmed = (Condition("Programmed", True, "Programmed") if served else
                      Condition("Programmed", False, "AddressNotAssigned" if report.address is None else "Invalid",
                                report.problem or "not served"))
        before = gateway.get("status") or {}
        listeners_before = {item.get("name"): item.get("conditions") or [] for item in before.get("listeners") or []}
        status = {
            "addresses": [{"type": "IPAddress", "value": report.address}] if served else [],
            "conditions": _conditions(before.get("conditions"), [build.accepted, programmed], generation),
            "listeners": [{"name": listener.name, "supportedKinds": SUPPORTED_KINDS,
                           "attachedRoutes": listener.attached,
                           "conditions": _conditions(listeners_before.get(listener.name), listener.conditions(),
                                                     generation)}
                          for listener in build.listeners]}
        self._custom.patch_namespaced_custom_object_status(GROUP, "v1", namespace, "gateways", name,
                                                           {"status": status})
        self._routes(build)

    def _accept_class(self, gateway_class: dict[str, Any] | None) -> None:
        """Say that Tandem takes a GatewayClass of its own (once per generation of the class)."""
        from kubernetes.client import ApiException

        if gateway_class is None:
            return
        metadata = gateway_class.get("metadata") or {}
        seen = (metadata.get("name"), metadata.get("generation"))
        if seen in self._accepted_classes:
            return
        with contextlib.suppress(ApiException):
            conditions = _conditions((gateway_class.get("status") or {}).get("conditions"),
                                     [Condition("Accepted", True, "Accepted")], metadata.get("generation"))
            self._custom.patch_cluster_custom_object_status(GROUP, "v1", "gatewayclasses", metadata.get("name"),
                                                            {"status": {"conditions": conditions}})
            self._accepted_classes.add(seen)

    def _routes(self, build: GatewayBuild) -> None:
        """Each route's parent entries for this Gateway, written over the route's status as it is now."""
        by_route: dict[ObjectName, list[dict[str, Any]]] = {}
        for parent in build.parents:
            by_route.setdefault(parent.route, []).append(
                {"parentRef": parent.parent_ref, "controllerName": GATEWAY_CONTROLLER,
                 "conditions": [parent.accepted, parent.resolved]})
        for (namespace, name), entries in by_route.items():
            self._route(namespace, name, entries)

    def _route(self, namespace: str, name: str, entries: list[dict[str, Any]]) -> None:
        from kubernetes.client import ApiException

        for _ in range(CONFLICT_RETRIES):
            route = self._custom.get_namespaced_custom_object(GROUP, "v1", namespace, "httproutes", name)
            metadata, parents = route.get("metadata") or {}, (route.get("status") or {}).get("parents") or []
            mine = {_ref_key(entry["parentRef"], namespace) for entry in entries}
            previous = {_ref_key(p.get("parentRef") or {}, namespace): p.get("conditions") for p in parents
                        if p.get("controllerName") == GATEWAY_CONTROLLER}
            named = {_ref_key(ref, namespace) for ref in (route.get("spec") or {}).get("parentRefs") or []}
            kept = [p for p in parents if p.get("controllerName") != GATEWAY_CONTROLLER  # another's, or ours of
                    or _ref_key(p.get("parentRef") or {}, namespace) in named - mine]  # a parent still named
            written = [entry | {"conditions": _conditions(previous.get(_ref_key(entry["parentRef"], namespace)),
                                                          entry["conditions"], metadata.get("generation"))}
                       for entry in entries]
            try:
                self._custom.patch_namespaced_custom_object_status(GROUP, "v1", namespace, "httproutes", name, {
                    "metadata": {"resourceVersion": metadata.get("resourceVersion")},
                    "status": {"parents": kept + written}})
                return
            except ApiException as error:
                if error.status != 409:
                    raise

    # -- Events ------------------------------------------------------------------------------------------

    def warn(self, kind: str, namespace: str, name: str, reason: str, message: str) -> None:
        """A Warning Event on a Service or an Ingress; the same one again (same object, reason and message)
        counts up the Event already made (`count`, `lastTimestamp`)."""
        from kubernetes.client import ApiException

        now = _now()
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


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _conditions(before: list[dict[str, Any]] | None, conditions: list[Condition],
                generation: int | None) -> list[dict[str, Any]]:
    """Conditions as the API takes them; a condition whose status did not change keeps its transition time."""
    since = {c.get("type"): (c.get("status"), c.get("lastTransitionTime")) for c in before or []}
    out = []
    for condition in conditions:
        written = condition.json(generation, _now())
        status, when = since.get(condition.type, (None, None))
        if status == written["status"] and when:
            written["lastTransitionTime"] = when
        out.append(written)
    return out


def _ref_key(ref: dict[str, Any], namespace: str) -> tuple[Any, ...]:
    """A parentRef with its defaults filled in, to compare two of them."""
    return (ref.get("group") or GROUP, ref.get("kind") or "Gateway", ref.get("namespace") or namespace,
            ref.get("name"), ref.get("sectionName"), ref.get("port"))
