"""Kubernetes Services as the agent serves them: which are the agent's (`Selection`), and what each asks for
(`service_of`): its ports, and as members the ready endpoints or, in member mode `nodeport`, the ready nodes
at the port's NodePort. Pure functions of the objects as the API serves them (dicts)."""

import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from tandem.agents.service import Service
from tandem.models.resources import DEFAULT_LB_METHOD, DEFAULT_TRAFFIC_GROUP

PREFIX = "tandem.io/"
ANNOTATIONS = {"address", "traffic-group", "monitor", "monitor-path", "monitor-interval", "lb-method",
               "member-mode", "sharing-key"}
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MEMBER_MODES = ("endpoints", "nodeport")
"""Members are the ready endpoints (pod addresses: the devices must reach the pod network), or every ready
node's InternalIP at the port's NodePort (any CNI)."""
EXCLUDED_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"
"""Nodes with this label are never members (as for Kubernetes' own service controller)."""

def _ready(endpoint: dict[str, Any]) -> bool:
    return (endpoint.get("conditions") or {}).get("ready") is not False


_KEY = r"([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
QUALIFIED_NAME = re.compile(rf"^{_KEY}$")
QUALIFIED_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
"""A label value (not empty)."""
NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_REQUIREMENT = rf"(!?{_KEY}|{_KEY}\s*(==|=|!=)\s*([A-Za-z0-9]([-A-Za-z0-9_.]{{0,61}}[A-Za-z0-9])?)?)"
SELECTOR = re.compile(rf"^\s*{_REQUIREMENT}\s*(,\s*{_REQUIREMENT}\s*)*$")
"""An equality-based label selector, as the API server takes it."""
_REQUIREMENT_PARTS = re.compile(r"\s*(!?[^\s!=]+)\s*(?:(==|=|!=)\s*(\S*))?\s*")
DEFAULT_CLASS = "tandem.io/lb"
"""The `spec.loadBalancerClass` of the Services an agent serves unless told another."""


@dataclass(frozen=True)
class Selection:
    """Which Services are the agent's: type LoadBalancer and of its class (`spec.loadBalancerClass`), or of
    none when `default_class`; in `namespaces` (none given: all) and matching the label `selector`. Nothing
    else is read into services, changed or reported on, its status included."""

    load_balancer_class: str = DEFAULT_CLASS
    default_class: bool = False
    namespaces: tuple[str, ...] = ()
    selector: str = ""

    def __post_init__(self) -> None:
        if not QUALIFIED_NAME.match(self.load_balancer_class):
            raise ValueError(f"--load-balancer-class {self.load_balancer_class!r}: a qualified name, like "
                             f"{DEFAULT_CLASS}")
        for namespace in self.namespaces:
            if not NAMESPACE.match(namespace):
                raise ValueError(f"--namespace {namespace!r}: a namespace name (lowercase letters, digits, '-')")
        if self.selector and not SELECTOR.match(self.selector):
            raise ValueError(f"--selector {self.selector!r}: label requirements joined by commas "
                             "(key=value, key!=value, key, !key)")

    def labelled(self, item: dict[str, Any]) -> bool:
        """Whether an object's labels match the selector (the namespaces are chosen by the watches)."""
        labels = (item.get("metadata") or {}).get("labels") or {}
        for requirement in filter(None, (r.strip() for r in self.selector.split(","))):
            key, operator, value = _REQUIREMENT_PARTS.fullmatch(requirement).groups()  # type: ignore[union-attr]
            if operator is None:
                if (key.startswith("!")) == (key.lstrip("!") in labels):
                    return False
            elif (labels.get(key) == value) != (operator != "!="):
                return False
        return True

    def claims(self, service: dict[str, Any]) -> bool:
        """Whether the Service is this agent's to serve (the namespaces are chosen by the watches)."""
        spec = service.get("spec") or {}
        if spec.get("type") != "LoadBalancer" or not self.labelled(service):
            return False
        claimed = spec.get("loadBalancerClass")
        return claimed == self.load_balancer_class if claimed else self.default_class


@dataclass(frozen=True)
class Node:
    """What the agent reads of a Node: its name, first InternalIP, and whether it may take traffic (Ready,
    not excluded from external load balancers)."""

    name: str
    address: str | None
    usable: bool


def node_of(node: dict[str, Any]) -> Node:
    metadata, status = node.get("metadata") or {}, node.get("status") or {}
    address = next((a.get("address") for a in status.get("addresses") or [] if a.get("type") == "InternalIP"), None)
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    excluded = EXCLUDED_LABEL in (metadata.get("labels") or {})
    return Node(metadata.get("name") or "", address, ready and not excluded and address is not None)


def _endpoint_members(port: dict[str, Any], slices: list[dict[str, Any]]) -> set[tuple[str, int]]:
    """The ready endpoints of the slices' port named as the Service's port."""
    return {(address, slice_port["port"])
            for item in slices for slice_port in item.get("ports") or []
            if (slice_port.get("name") or "") == (port.get("name") or "") and slice_port.get("port")
            for endpoint in item.get("endpoints") or [] if _ready(endpoint)
            for address in endpoint.get("addresses") or []}


def _node_members(port: dict[str, Any], spec: dict[str, Any], slices: list[dict[str, Any]],
                  nodes: list[Node]) -> set[tuple[str, int]]:
    """The usable nodes at the port's NodePort; with `externalTrafficPolicy: Local` only those with a ready
    endpoint of the Service (kube-proxy drops the traffic on the others)."""
    node_port = port.get("nodePort")
    if not node_port:
        raise ValueError(f"port {port.get('port')}: no nodePort (member mode nodeport needs one: leave "
                         "allocateLoadBalancerNodePorts on)")
    usable = [node for node in nodes if node.usable]
    if spec.get("externalTrafficPolicy") == "Local":
        local = {endpoint.get("nodeName") for item in slices for endpoint in item.get("endpoints") or []
                 if _ready(endpoint)}
        usable = [node for node in usable if node.name in local]
    return {(node.address, node_port) for node in usable if node.address is not None}


def sharing_key(annotations: dict[str, str]) -> str | None:
    """The `tandem.io/sharing-key` annotation's value, checked as a label value (it goes into names)."""
    key = annotations.get("sharing-key")
    if key is not None and not QUALIFIED_VALUE.match(key):
        raise ValueError(f"{PREFIX}sharing-key {key!r}: letters, digits, '-', '_' and '.', at most 63")
    return key


def tandem_annotations(metadata: dict[str, Any], known: set[str]) -> dict[str, str]:
    """An object's `tandem.io/` annotations without the prefix; ValueError naming one not in `known`."""
    annotations = {k.removeprefix(PREFIX): v for k, v in (metadata.get("annotations") or {}).items()
                   if k.startswith(PREFIX)}
    unknown = sorted(set(annotations) - known)
    if unknown:
        raise ValueError(f"unknown annotation {PREFIX}{unknown[0]}")
    return annotations


def chosen_member_mode(annotations: dict[str, str], member_mode: str) -> str:
    """The member mode an object's annotation asks for, else the agent's."""
    mode = annotations.get("member-mode", member_mode)
    if mode not in MEMBER_MODES:
        raise ValueError(f"{PREFIX}member-mode {mode!r}: {' or '.join(MEMBER_MODES)}")
    return mode


def port_members(service: dict[str, Any], port: dict[str, Any], slices: list[dict[str, Any]], nodes: list[Node],
                 mode: str) -> set[tuple[str, int]]:
    """The members of one of a Service's ports in member mode `mode` (ValueError if it cannot have any)."""
    if mode == "endpoints":
        return _endpoint_members(port, slices)
    return _node_members(port, service.get("spec") or {}, slices, nodes)


def service_of(service: dict[str, Any], slices: list[dict[str, Any]], selection: Selection = Selection(),
               nodes: list[Node] | None = None, member_mode: str = "endpoints") -> Service | None:
    """The service a Kubernetes Service asks for (None: not one of `selection`'s), its members by the
    Service's `tandem.io/member-mode` or else `member_mode`; ValueError naming what is wrong."""
    if not selection.claims(service):
        return None
    metadata, spec = service.get("metadata") or {}, service.get("spec") or {}
    annotations = tandem_annotations(metadata, ANNOTATIONS)
    mode = chosen_member_mode(annotations, member_mode)
    ports = []
    for port in spec.get("ports") or []:
        protocol = port.get("protocol") or "TCP"
        if protocol != "TCP":
            raise ValueError(f"port {port.get('port')}: protocol {protocol} is not served (TCP only)")
        members = port_members(service, port, slices, nodes or [], mode)
        ports.append({"port": port.get("port"), "members": [{"address": a, "port": p} for a, p in sorted(members)]})
    monitor = None
    if "monitor" in annotations:
        monitor = {"type": annotations["monitor"]}
        if "monitor-path" in annotations:
            monitor["path"] = annotations["monitor-path"]
        if "monitor-interval" in annotations:
            monitor["interval"] = annotations["monitor-interval"]
    families = spec.get("ipFamilies") or []
    warnings = []
    if len(families) > 1 and spec.get("ipFamilyPolicy") == "RequireDualStack":
        warnings.append((f"{metadata.get('namespace')}/{metadata.get('name')}",
                         f"served on {families[0]} only: one address per Service"))
    try:
        return Service.model_validate({
            "key": f"{metadata.get('namespace')}/{metadata.get('name')}",
            "address": annotations.get("address") or spec.get("loadBalancerIP") or None,
            "sharing_key": sharing_key(annotations), "warnings": tuple(warnings),
            "ip_family": {"IPv4": 4, "IPv6": 6}.get(families[0]) if families else None,
            "traffic_group": annotations.get("traffic-group", DEFAULT_TRAFFIC_GROUP), "ports": ports,
            "monitor": monitor, "lb_method": annotations.get("lb-method", DEFAULT_LB_METHOD)})
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"{where}: {first['msg']}") from None


