"""Kubernetes Ingresses (networking.k8s.io/v1) as the agent serves them: which are the agent's (of an
IngressClass whose controller is Tandem's), how they group on addresses, and the service each group asks
for. Pure functions of the objects as the API serves them (dicts).

An Ingress is served alone at an address of its own (`tandem.io/address`, else one from the address pool),
or with the others of the same `tandem.io/sharing-key`, or of the same `tandem.io/address`: one http virtual
server (port 80, or `tandem.io/http-port`) and, when some `tls` entry has a usable Secret, one https virtual
server (port 443, or `tandem.io/https-port`) with every rule of the group. Paths: `Exact` as it is; `Prefix`
element-wise as Kubernetes says (`/a` takes `/a` and `/a/b`, not `/ab`); `ImplementationSpecific` as a
plain string prefix. Rules are ordered as Kubernetes asks: a host before none, an exact path before a
prefix, a longer prefix before a shorter. When two Ingresses of a group claim the same host and path (or
both give a default backend) the older one wins (creation time, then namespace/name) and the younger one
gets a warning. A backend whose Service or port is missing answers 503, with a warning; a `tls` entry
whose Secret is missing or bad is left out, with a warning.
"""

import base64
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from tandem.agents.service import Backend, Member, Route, Service, TlsPair
from tandem.agents.sources.k8s_services import (
    QUALIFIED_VALUE,
    Node,
    chosen_member_mode,
    port_members,
    sharing_key,
    tandem_annotations,
)
from tandem.models import pem
from tandem.models.resources import DEFAULT_LB_METHOD, DEFAULT_TRAFFIC_GROUP, RuleMatch

INGRESS_CONTROLLER = "tandem.io/ingress-controller"
"""The `spec.controller` of the IngressClasses whose Ingresses the agent serves."""
IS_DEFAULT_CLASS = "ingressclass.kubernetes.io/is-default-class"
INGRESS_ANNOTATIONS = {"address", "sharing-key", "traffic-group", "http-port", "https-port", "member-mode",
                       "lb-method"}
TLS_SECRET = "kubernetes.io/tls"
INGRESS_PREFIX = "ingress:"
"""The keys of ingress services start so (Services' keys are `namespace/name`)."""

ADDRESS_TEXT = re.compile(r"^[0-9A-Fa-f.:]{2,45}$")
"""What may be an address (checked as one when the service is built)."""
ObjectName = tuple[str, str]
"""(namespace, name) of a namespaced object."""


@dataclass(frozen=True)
class ClusterView:
    """What Ingresses and routes refer to: Services, their EndpointSlices by Service, the Nodes, and the
    TLS Secrets (each checked: its certificate and key, or why it cannot be used)."""

    services: Mapping[ObjectName, dict[str, Any]]
    slices: Mapping[ObjectName, Mapping[ObjectName, dict[str, Any]]]
    nodes: list[Node]
    secrets: Mapping[ObjectName, TlsPair | str]
    member_mode: str = "endpoints"

    def members(self, namespace: str, service_name: str, port_ref: dict[str, Any], mode: str) -> set[tuple[str, int]]:
        """The members of a Service's port (`{"number": N}` or `{"name": NAME}`) in member mode `mode`;
        ValueError saying why there can be none."""
        number, port_name = port_ref.get("number"), port_ref.get("name")
        service = self.services.get((namespace, service_name))
        if service is None:
            raise ValueError(f"Service {namespace}/{service_name} does not exist")
        port = next((p for p in (service.get("spec") or {}).get("ports") or []
                     if (number and p.get("port") == number) or (port_name and p.get("name") == port_name)), None)
        if port is None:
            raise ValueError(f"Service {namespace}/{service_name} has no port {number or port_name}")
        try:
            return port_members(service, port, list(self.slices.get((namespace, service_name), {}).values()),
                                self.nodes, mode)
        except ValueError as error:
            raise ValueError(f"Service {namespace}/{service_name}: {error}") from None


def tandem_classes(classes: Iterable[dict[str, Any]]) -> tuple[frozenset[str], bool]:
    """The names of the IngressClasses of Tandem's controller, and whether one of them is the default."""
    ours = [c for c in classes if (c.get("spec") or {}).get("controller") == INGRESS_CONTROLLER]
    default = any(((c.get("metadata") or {}).get("annotations") or {}).get(IS_DEFAULT_CLASS) == "true" for c in ours)
    return frozenset((c.get("metadata") or {}).get("name", "") for c in ours), default


def claims(ingress: dict[str, Any], classes: frozenset[str], default: bool) -> bool:
    """Whether the Ingress is Tandem's: its class is one of `classes`, or it names none and Tandem's is the
    default (the former `kubernetes.io/ingress.class` annotation counts as a class name)."""
    named = (ingress.get("spec") or {}).get("ingressClassName") or (
        (ingress.get("metadata") or {}).get("annotations") or {}).get("kubernetes.io/ingress.class")
    return named in classes if named else default


def group_key(ingress: dict[str, Any]) -> str:
    """The key of the service an Ingress is served in: its sharing key's, its address's, or its own."""
    metadata = ingress.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    sharing, address = annotations.get("tandem.io/sharing-key"), annotations.get("tandem.io/address")
    if sharing and QUALIFIED_VALUE.match(sharing):
        return f"{INGRESS_PREFIX}share.{sharing}"
    if address and ADDRESS_TEXT.match(address):
        return f"{INGRESS_PREFIX}address.{address}"
    return f"{INGRESS_PREFIX}{metadata.get('namespace')}/{metadata.get('name')}"  # bad values: its own error


def references(ingress: dict[str, Any]) -> set[tuple[str, str, str]]:
    """The Services and Secrets an Ingress refers to, as (resource, namespace, name)."""
    namespace, spec = (ingress.get("metadata") or {}).get("namespace") or "", ingress.get("spec") or {}
    backends = [(spec.get("defaultBackend") or {}).get("service")] + [
        (path.get("backend") or {}).get("service") for rule in spec.get("rules") or []
        for path in (rule.get("http") or {}).get("paths") or []]
    return ({("services", namespace, b["name"]) for b in backends if b and b.get("name")}
            | {("secrets", namespace, t["secretName"]) for t in spec.get("tls") or [] if t.get("secretName")})


def age(item: dict[str, Any]) -> tuple[str, str, str]:
    """Oldest first: creation time, then namespace and name."""
    metadata = item.get("metadata") or {}
    return metadata.get("creationTimestamp") or "", metadata.get("namespace") or "", metadata.get("name") or ""


def tls_pair(secret: dict[str, Any]) -> TlsPair | str:
    """A `kubernetes.io/tls` Secret's certificate chain and key, checked; or why it cannot be used."""
    metadata = secret.get("metadata") or {}
    if secret.get("type") != TLS_SECRET:
        return f"is of type {secret.get('type')!r}, not {TLS_SECRET}"
    data = secret.get("data") or {}
    try:
        chain, key = (base64.b64decode(data.get(field) or "", validate=True).decode()
                      for field in ("tls.crt", "tls.key"))
    except (ValueError, UnicodeDecodeError):
        return "tls.crt or tls.key is not base64 of PEM text"
    try:
        pem.check_key(key, pem.load_chain(chain)[0])
    except ValueError as error:
        return str(error).replace("certificate:", "tls.crt:").replace("key:", "tls.key:")
    return TlsPair(name=short_hash(f"{metadata.get('namespace')}/{metadata.get('name')}"), certificate=chain, key=key)


def short_hash(text: str) -> str:
    """A stable short name for something referred to (a backend, a certificate) within a service."""
    return hashlib.blake2b(text.encode(), digest_size=4).hexdigest()


def path_match(path: str | None, path_type: str) -> dict[str, str]:
    """A Kubernetes path (`Exact`, `Prefix` or `ImplementationSpecific`, as Ingress and HTTPRoute give it) as
    a rule's match: `Prefix` is element-wise, so `/a` becomes the regex `^/a(/.*)?$`."""
    if not path or (path_type in ("Prefix", "PathPrefix") and path.rstrip("/") == ""):
        return {}
    if path_type == "Exact":
        return {"path": path, "path_type": "exact"}
    if path_type in ("Prefix", "PathPrefix"):
        return {"path": f"^{re.escape(path.rstrip('/'))}(/.*)?$", "path_type": "regex"}
    if path_type == "ImplementationSpecific":
        return {"path": path, "path_type": "prefix"}
    raise ValueError(f"pathType {path_type!r}: Exact, Prefix or ImplementationSpecific")


def route_order(route: Route) -> tuple[bool, bool, int, int, int]:
    """Kubernetes' precedence: a host before none (an exact host before a wildcard, a longer one before a
    shorter), an exact path before a prefix, a longer path before a shorter one."""
    match = route.match
    host = match.host
    return (host is None, bool(host and host.startswith("*.")), -len(host or ""),
            0 if match.path_type == "exact" else 1, -len(match.path or ""))


class _Group:
    """The service of a group of Ingresses being built: backends and certificates by name, routes, warnings."""

    def __init__(self, view: ClusterView) -> None:
        self.view = view
        self.backends: dict[str, Backend] = {}
        self.certificates: dict[str, TlsPair] = {}
        self.routes: list[Route] = []
        self.claimed: dict[tuple[str | None, str | None, str], str] = {}
        self.default: tuple[str, str] | None = None
        self.warnings: list[tuple[str, str]] = []

    def backend(self, owner: str, namespace: str, service_name: str, port_ref: dict[str, Any], mode: str) -> str:
        """The backend of a Service's port (made once per group); its members by `mode`."""
        name = short_hash(f"{namespace}/{service_name}:{port_ref.get('number') or port_ref.get('name')}:{mode}")
        if name in self.backends:
            return name
        members: set[tuple[str, int]] = set()
        try:
            members = self.view.members(namespace, service_name, port_ref, mode)
        except ValueError as error:
            self.warnings.append((owner, f"backend {error} (503)"))
        self.backends[name] = Backend(name=name, members=[Member(address=a, port=p) for a, p in sorted(members)])
        return name

    def certificate(self, owner: str, namespace: str, secret_name: str) -> str | None:
        pair = self.view.secrets.get((namespace, secret_name))
        if not isinstance(pair, TlsPair):
            self.warnings.append((owner, f"TLS Secret {namespace}/{secret_name} "
                                         f"{pair or 'does not exist'}: left out"))
            return None
        self.certificates[pair.name] = pair
        return pair.name

    def claim(self, owner: str, host: str | None, path: str | None, path_type: str) -> bool:
        """Whether the rule is the first of the group for its host and path (else a warning for `owner`)."""
        first = self.claimed.setdefault((host, path, path_type), owner)
        if first != owner:
            self.warnings.append((owner, f"host {host or '*'} path {path or '/'} is also served by Ingress {first} "
                                         f"(older: it wins)"))
        return first == owner


def ingress_service(key: str, ingresses: list[dict[str, Any]], view: ClusterView) -> Service:
    """The service of a group of Ingresses (the oldest first); ValueError if none of them can be served
    (those that cannot are warnings otherwise)."""
    group = _Group(view)
    settings: dict[str, str] | None = None
    served: list[str] = []
    https = False
    for ingress in sorted(ingresses, key=age):
        metadata, spec = ingress.get("metadata") or {}, ingress.get("spec") or {}
        namespace, owner = metadata.get("namespace") or "", f"{metadata.get('namespace')}/{metadata.get('name')}"
        try:
            annotations = tandem_annotations(metadata, INGRESS_ANNOTATIONS)
            mode = chosen_member_mode(annotations, view.member_mode)
            _port(annotations, "http-port", 80), _port(annotations, "https-port", 443)
            sharing_key(annotations)
            rules = _rules(spec)
        except ValueError as error:
            if len(ingresses) == 1:
                raise
            group.warnings.append((owner, f"not served: {error}"))
            continue
        mine = {k: v for k, v in annotations.items() if k not in ("member-mode", "sharing-key")}
        if settings is None:
            settings = mine
        elif mine and mine != settings:
            group.warnings.append((owner, f"annotations {sorted(mine)} differ from those of the group's oldest "
                                          f"Ingress {served[0]}: the oldest's are used"))
        served.append(owner)
        for host, path, path_type, match, backend in rules:
            if group.claim(owner, host, path, path_type):
                name = group.backend(owner, namespace, backend["name"], backend.get("port") or {}, mode)
                group.routes.append(Route(name=f"r{len(group.routes)}", match=match, backend=name))
        default = (spec.get("defaultBackend") or {}).get("service")
        if default and group.default is None:
            group.default = (owner, group.backend(owner, namespace, default.get("name") or "",
                                                  default.get("port") or {}, mode))
        elif default:
            group.warnings.append((owner, f"the default backend of Ingress {group.default[0]} (older) is used"))
        for tls in spec.get("tls") or []:
            if tls.get("secretName"):
                https = group.certificate(owner, namespace, tls["secretName"]) is not None or https
    if settings is None:
        raise ValueError("none of its Ingresses can be served")
    group.routes.sort(key=route_order)
    routes = [route.model_copy(update={"name": f"r{index}"}) for index, route in enumerate(group.routes)]
    ports = [{"port": _port(settings, "http-port", 80), "protocol": "http", "routes": routes,
              "backend": group.default[1] if group.default else None}]
    if https:
        ports.append(ports[0] | {"port": _port(settings, "https-port", 443), "protocol": "https",
                                 "certificates": sorted(group.certificates)})
    try:
        return Service.model_validate({
            "key": key, "address": settings.get("address"), "traffic_group": settings.get("traffic-group",
                                                                                          DEFAULT_TRAFFIC_GROUP),
            "ports": ports, "backends": list(group.backends.values()),
            "certificates": list(group.certificates.values()), "lb_method": settings.get("lb-method",
                                                                                          DEFAULT_LB_METHOD),
            "warnings": tuple(group.warnings), "revision": short_hash(repr(served))})
    except ValidationError as error:
        first = error.errors()[0]
        raise ValueError(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None


def _rules(spec: dict[str, Any]) -> list[tuple[str | None, str | None, str, RuleMatch, dict[str, Any]]]:
    """(host, path, pathType, the rule's match, backend Service) of each path of an Ingress's rules; ValueError
    if one is bad."""
    out = []
    for rule in spec.get("rules") or []:
        host = rule.get("host") or None
        for path in (rule.get("http") or {}).get("paths") or []:
            where = f"host {host or '*'} path {path.get('path') or '/'}"
            backend = (path.get("backend") or {}).get("service")
            if not backend or not backend.get("name"):
                raise ValueError(f"{where}: only Service backends are served")
            path_type = path.get("pathType") or "ImplementationSpecific"
            try:
                match = RuleMatch.model_validate(({"host": host} if host else {}) | path_match(path.get("path"),
                                                                                              path_type))
            except ValidationError as error:
                raise ValueError(f"{where}: {error.errors()[0]['msg']}") from None
            out.append((host, path.get("path"), path_type, match, backend))
    if not out and not (spec.get("defaultBackend") or {}).get("service"):
        raise ValueError("no rules and no default backend")
    return out


def _port(settings: dict[str, str], annotation: str, default: int) -> int:
    text = settings.get(annotation)
    if text is None:
        return default
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"tandem.io/{annotation} {text!r}: a port number")
    return int(text)
