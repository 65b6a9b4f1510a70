"""Gateway API (gateway.networking.k8s.io/v1) as the agent serves it: a Gateway of a GatewayClass whose
controller is Tandem's becomes one service (its address: `spec.addresses`, else one from the address pool),
each HTTP or HTTPS listener port a virtual server, and the HTTPRoutes attached to its listeners the rules of
those ports. What the specification asks to be told comes back as status conditions: on the Gateway
(`Accepted`, `Programmed`) and each listener (`Accepted`, `ResolvedRefs`, `Programmed`, `Conflicted`), and on
each route for each of its parents that is such a Gateway (`Accepted`, `ResolvedRefs`). Pure functions of
the objects as the API serves them (dicts).

Served: listeners of protocol HTTP and HTTPS (TLS mode Terminate, certificates from `kubernetes.io/tls`
Secrets of the Gateway's namespace) with `allowedRoutes` from `Same` or `All` namespaces; route matches on
path (`Exact`, `PathPrefix` element-wise, `RegularExpression`), exact headers and method; backendRefs to
Services with weights; the `RequestRedirect` filter (to the given scheme, hostname, port and full path: the
request's own path is not carried over). Not served (the route's parent says `UnsupportedValue`): other
filters, query parameter matches, regular-expression header matches, other listener protocols.
"""

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from tandem.agents.service import Backend, Member, Route, Service, TlsPair
from tandem.agents.sources.k8s_ingress import (
    ClusterView,
    ObjectName,
    age,
    path_match,
    route_order,
    short_hash,
)
from tandem.agents.sources.k8s_services import chosen_member_mode, tandem_annotations
from tandem.models.resources import DEFAULT_LB_METHOD, DEFAULT_TRAFFIC_GROUP, RuleMatch

GATEWAY_CONTROLLER = "tandem.io/gateway-controller"
"""The `spec.controllerName` of the GatewayClasses whose Gateways the agent serves."""
GROUP = "gateway.networking.k8s.io"
GATEWAY_PREFIX = "gateway:"
"""The keys of gateway services start so."""
GATEWAY_ANNOTATIONS = {"traffic-group", "member-mode", "lb-method"}
PROTOCOLS = {"HTTP": "http", "HTTPS": "https"}
SUPPORTED_KINDS = [{"group": GROUP, "kind": "HTTPRoute"}]


@dataclass(frozen=True)
class Condition:
    """A status condition as the Gateway API defines them."""

    type: str
    status: bool
    reason: str
    message: str = ""

    def json(self, generation: int | None, now: str) -> dict[str, Any]:
        return {"type": self.type, "status": "True" if self.status else "False", "reason": self.reason,
                "message": self.message or self.reason, "observedGeneration": generation, "lastTransitionTime": now}


@dataclass
class ListenerState:
    """What a listener's status says."""

    name: str
    port: int
    protocol: str
    hostname: str | None
    routes_from: str = "Same"
    """`allowedRoutes.namespaces.from`: `All`, or the Gateway's namespace only (`Selector` is taken as `Same`:
    the agent does not read Namespaces)."""
    attached: int = 0
    accepted: Condition = Condition("Accepted", True, "Accepted")
    resolved: Condition = Condition("ResolvedRefs", True, "ResolvedRefs")
    conflicted: Condition = Condition("Conflicted", False, "NoConflicts")
    certificates: list[str] = field(default_factory=list)

    @property
    def takes_http_routes(self) -> bool:
        """Whether `allowedRoutes.kinds` lets HTTPRoutes attach."""
        return self.resolved.reason != "InvalidRouteKinds"

    @property
    def usable(self) -> bool:
        return self.accepted.status and not self.conflicted.status and self.protocol in PROTOCOLS

    def conditions(self) -> list[Condition]:
        programmed = (Condition("Programmed", True, "Programmed") if self.usable and self.resolved.status
                      else Condition("Programmed", False, "Invalid", "the listener cannot be served"))
        return [self.accepted, self.resolved, programmed, self.conflicted]


@dataclass
class RouteParent:
    """What a route's status says for one of its parents (a Gateway of Tandem's)."""

    route: ObjectName
    parent_ref: dict[str, Any]
    accepted: Condition
    resolved: Condition


@dataclass
class GatewayBuild:
    """A Gateway as served: its service (None: nothing of it can be served), and its and its routes' status."""

    service: Service | None
    accepted: Condition
    listeners: list[ListenerState]
    parents: list[RouteParent]
    references: set[tuple[str, str, str]]
    """The Services, Secrets and HTTPRoutes it was built from, as (resource, namespace, name)."""
    problem: str | None = None


def tandem_gateway_classes(classes: Iterable[dict[str, Any]]) -> frozenset[str]:
    """The names of the GatewayClasses of Tandem's controller."""
    return frozenset((c.get("metadata") or {}).get("name", "") for c in classes
                     if (c.get("spec") or {}).get("controllerName") == GATEWAY_CONTROLLER)


def gateway_key(namespace: str, name: str) -> str:
    return f"{GATEWAY_PREFIX}{namespace}/{name}"


def parents_of(route: dict[str, Any]) -> list[tuple[ObjectName, dict[str, Any]]]:
    """The Gateways a route names as parents: ((namespace, name), the parentRef)."""
    namespace = (route.get("metadata") or {}).get("namespace") or ""
    return [((ref.get("namespace") or namespace, ref.get("name") or ""), ref)
            for ref in (route.get("spec") or {}).get("parentRefs") or []
            if (ref.get("group") or GROUP) == GROUP and (ref.get("kind") or "Gateway") == "Gateway"]


def intersect(listener: str | None, route: str | None) -> str | bool | None:
    """The hostname requests must have for a route's hostname on a listener's (None: any; False: they never
    meet)."""
    if listener is None or route is None:
        return route if listener is None else listener
    if listener == route:
        return route
    if listener.startswith("*.") and route.endswith(listener[1:]):
        return route
    if route.startswith("*.") and listener.endswith(route[1:]):
        return listener
    return False


def _listeners(gateway: dict[str, Any], view: ClusterView) -> tuple[list[ListenerState], dict[str, TlsPair]]:
    """Each listener's state (protocol, port conflicts, certificates), and the certificates by name."""
    namespace = (gateway.get("metadata") or {}).get("namespace") or ""
    states, certificates = [], {}
    for listener in (gateway.get("spec") or {}).get("listeners") or []:
        state = ListenerState(listener.get("name") or "", int(listener.get("port") or 0),
                              listener.get("protocol") or "", listener.get("hostname") or None,
                              (((listener.get("allowedRoutes") or {}).get("namespaces") or {}).get("from") or "Same"))
        states.append(state)
        if state.protocol not in PROTOCOLS:
            state.accepted = Condition("Accepted", False, "UnsupportedProtocol",
                                       f"protocol {state.protocol} is not served (HTTP, HTTPS)")
            continue
        kinds = (listener.get("allowedRoutes") or {}).get("kinds")
        if kinds and not any((k.get("group") or GROUP, k.get("kind")) == (GROUP, "HTTPRoute") for k in kinds):
            state.resolved = Condition("ResolvedRefs", False, "InvalidRouteKinds", "only HTTPRoute is served")
        if state.protocol == "HTTPS":
            tls = listener.get("tls") or {}
            if (tls.get("mode") or "Terminate") != "Terminate":
                state.accepted = Condition("Accepted", False, "UnsupportedValue", "TLS mode Passthrough is not served")
                continue
            for ref in tls.get("certificateRefs") or []:
                where = (ref.get("namespace") or namespace, ref.get("name") or "")
                if (ref.get("group") or "", ref.get("kind") or "Secret") != ("", "Secret"):
                    state.resolved = Condition("ResolvedRefs", False, "InvalidCertificateRef",
                                               f"{ref.get('kind')} is not a Secret")
                elif where[0] != namespace:
                    state.resolved = Condition("ResolvedRefs", False, "RefNotPermitted",
                                               f"Secret {where[0]}/{where[1]} is in another namespace")
                elif not isinstance(pair := view.secrets.get(where), TlsPair):
                    state.resolved = Condition("ResolvedRefs", False, "InvalidCertificateRef",
                                               f"Secret {where[0]}/{where[1]} {pair or 'does not exist'}")
                else:
                    certificates[pair.name] = pair
                    state.certificates.append(pair.name)
            if not state.certificates:
                state.resolved = state.resolved if not state.resolved.status else Condition(
                    "ResolvedRefs", False, "InvalidCertificateRef", "no certificateRefs")
    for state in states:
        same_port = [s for s in states if s.port == state.port and s is not state]
        if any(s.protocol != state.protocol for s in same_port):
            state.conflicted = Condition("Conflicted", True, "ProtocolConflict",
                                         f"another listener on port {state.port} has another protocol")
        elif any(s.hostname == state.hostname for s in same_port):
            state.conflicted = Condition("Conflicted", True, "HostnameConflict",
                                         f"another listener on port {state.port} has the same hostname")
    return states, certificates


class _Routes:
    """The rules and backends of a Gateway's ports being built from its routes."""

    def __init__(self, view: ClusterView, mode: str) -> None:
        self.view, self.mode = view, mode
        self.backends: dict[str, Backend] = {}
        self.by_port: dict[int, list[tuple[tuple[Any, ...], Route]]] = {}
        self.references: set[tuple[str, str, str]] = set()

    def backend(self, namespace: str, refs: list[dict[str, Any]]) -> tuple[Backend, Condition]:
        """One backend for a rule's weighted backendRefs: each Service's share of the traffic spread over its
        members (member weight = the ref's weight over its member count, scaled to 1..256; a share too small
        for that still gets 1)."""
        resolved, shares = Condition("ResolvedRefs", True, "ResolvedRefs"), []
        for ref in refs:
            weight = int(ref.get("weight", 1))
            where = (ref.get("namespace") or namespace, ref.get("name") or "")
            self.references.add(("services", *where))
            if (ref.get("group") or "", ref.get("kind") or "Service") != ("", "Service"):
                resolved = Condition("ResolvedRefs", False, "InvalidKind", f"{ref.get('kind')} is not a Service")
                continue
            if where[0] != namespace:
                resolved = Condition("ResolvedRefs", False, "RefNotPermitted",
                                     f"Service {where[0]}/{where[1]} is in another namespace")
                continue
            try:
                members = self.view.members(*where, {"number": ref.get("port")}, self.mode)
            except ValueError as error:
                resolved = Condition("ResolvedRefs", False, "BackendNotFound", str(error))
                continue
            if members:
                shares.append((weight / len(members), members))
        top = max((share for share, _ in shares), default=0) or 1
        members = [Member(address=a, port=p, weight=max(1, round(256 * share / top)) if share else 0)
                   for share, found in shares for a, p in sorted(found)]
        name = short_hash(repr(sorted((m.address, m.port, m.weight) for m in members)) + repr(refs))
        return Backend(name=name, members=members), resolved

    def rules(self, route: dict[str, Any], listener: ListenerState,
              hosts: list[str | None]) -> tuple[list[tuple[tuple[Any, ...], Route]], list[Backend], Condition]:
        """The rules of a route on a listener, for each of the hostnames (with their precedence), the backends
        they use, and a condition saying what is not served; _Unsupported if the route cannot be served."""
        namespace = (route.get("metadata") or {}).get("namespace") or ""
        resolved = Condition("ResolvedRefs", True, "ResolvedRefs")
        made: list[tuple[tuple[Any, ...], Route]] = []
        backends: list[Backend] = []
        for index, rule in enumerate((route.get("spec") or {}).get("rules") or []):
            redirect = None
            for item in rule.get("filters") or []:
                if item.get("type") != "RequestRedirect":
                    raise _Unsupported(f"filter {item.get('type')} is not served (RequestRedirect only)")
                redirect = item.get("requestRedirect") or {}
            backend = None
            if redirect is None:
                made_backend, condition = self.backend(namespace, rule.get("backendRefs") or [])
                backends.append(made_backend)
                backend = made_backend.name
                resolved = condition if not condition.status else resolved
            for number, match in enumerate(rule.get("matches") or [{}]):
                for host in hosts:
                    rule_match = _match(match, host)
                    target: dict[str, Any] = {"backend": backend} if redirect is None else _redirect(
                        redirect, host, listener, rule_match)
                    order = (*route_order(Route(name="x", match=rule_match, backend="x")), not rule_match.methods,
                             -len(rule_match.headers), *age(route), index, number)
                    made.append((order, Route.model_validate({"name": "x", "match": rule_match, **target})))
        return made, backends, resolved

    def take(self, listener: ListenerState, made: list[tuple[tuple[Any, ...], Route]],
             backends: list[Backend]) -> None:
        """Add a route's rules and backends to the listener's port."""
        self.by_port.setdefault(listener.port, []).extend(made)
        self.backends |= {backend.name: backend for backend in backends}
        listener.attached += 1


class _Unsupported(ValueError):
    """Something of a route this agent does not serve."""


def _match(match: dict[str, Any], host: str | None) -> RuleMatch:
    path = match.get("path") or {}
    path_type = path.get("type") or "PathPrefix"
    if path_type == "RegularExpression":
        fields = {"path": path.get("value") or "", "path_type": "regex"}
    elif path_type in ("Exact", "PathPrefix"):
        fields = path_match(path.get("value") or "/", path_type)
    else:
        raise _Unsupported(f"path type {path_type} is not served")
    if match.get("queryParams"):
        raise _Unsupported("query parameter matches are not served")
    headers = []
    for header in match.get("headers") or []:
        if (header.get("type") or "Exact") != "Exact":
            raise _Unsupported("regular-expression header matches are not served")
        headers.append({"name": header.get("name"), "value": header.get("value")})
    try:
        return RuleMatch.model_validate({**fields, "headers": headers, **({"host": host} if host else {}),
                                         **({"methods": [match["method"]]} if match.get("method") else {})})
    except ValidationError as error:
        raise _Unsupported(f"{error.errors()[0]['loc'][0]}: {error.errors()[0]['msg']}") from None


def _redirect(redirect: dict[str, Any], host: str | None, listener: ListenerState,
              match: RuleMatch) -> dict[str, Any]:
    """A RequestRedirect as a redirect route: scheme, hostname and port given or as the request had them."""
    hostname = redirect.get("hostname") or (host if host and not host.startswith("*.") else None)
    if hostname is None:
        raise _Unsupported("a redirect needs a hostname (in the filter, or one exact hostname of the route)")
    scheme = redirect.get("scheme") or ("https" if listener.protocol == "HTTPS" else "http")
    # no port given: the scheme's own when a scheme is given, else the listener's (as the specification says)
    port = redirect.get("port") or (None if redirect.get("scheme") else listener.port)
    default = {"http": 80, "https": 443}[scheme]
    path = (redirect.get("path") or {}).get("replaceFullPath") or (match.path if match.path_type == "exact" else "/")
    if (redirect.get("path") or {}).get("type") == "ReplacePrefixMatch":
        raise _Unsupported("ReplacePrefixMatch redirects are not served")
    authority = hostname if port in (None, default) else f"{hostname}:{port}"
    return {"location": f"{scheme}://{authority}{path}", "status": int(redirect.get("statusCode") or 302)}


def gateway_service(key: str, gateway: dict[str, Any], routes: list[dict[str, Any]], view: ClusterView) -> GatewayBuild:
    """A Gateway and the HTTPRoutes that name it as a parent, as a service and the status to report."""
    metadata, spec = gateway.get("metadata") or {}, gateway.get("spec") or {}
    namespace, name = metadata.get("namespace") or "", metadata.get("name") or ""
    references = {("secrets", namespace, (r.get("name") or "")) for listener in spec.get("listeners") or []
                  for r in (listener.get("tls") or {}).get("certificateRefs") or []}
    listeners, certificates = _listeners(gateway, view)
    try:
        annotations = tandem_annotations(metadata, GATEWAY_ANNOTATIONS)
        mode = chosen_member_mode(annotations, view.member_mode)
    except ValueError as error:
        return GatewayBuild(None, Condition("Accepted", False, "InvalidParameters", str(error)), listeners, [],
                            references, str(error))
    addresses = spec.get("addresses") or []
    if any((a.get("type") or "IPAddress") != "IPAddress" for a in addresses) or len(addresses) > 1:
        problem = "only one address of type IPAddress is served"
        return GatewayBuild(None, Condition("Accepted", False, "UnsupportedAddress", problem), listeners, [],
                            references, problem)
    built = _Routes(view, mode)
    parents = []
    for route in sorted(routes, key=age):
        route_name = ((route.get("metadata") or {}).get("namespace") or "", (route.get("metadata") or {}).get("name"))
        references.add(("httproutes", *route_name))
        for parent, ref in parents_of(route):
            if parent != (namespace, name):
                continue
            accepted, resolved = _attach(route, ref, listeners, built)
            parents.append(RouteParent(route_name, ref, accepted, resolved))
    references |= built.references
    usable = [listener for listener in listeners if listener.usable]
    if not usable:
        problem = "no listener can be served"
        return GatewayBuild(None, Condition("Accepted", False, "ListenersNotValid", problem), listeners, parents,
                            references, problem)
    ports = []
    for port in sorted({listener.port for listener in usable}):
        on_port = [listener for listener in usable if listener.port == port]
        rules = [route for _, route in sorted(built.by_port.get(port, []), key=lambda pair: pair[0])]
        ports.append({"port": port, "protocol": PROTOCOLS[on_port[0].protocol],
                      "routes": [r.model_copy(update={"name": f"r{i}"}) for i, r in enumerate(rules)],
                      "certificates": sorted({c for listener in on_port for c in listener.certificates})})
    ports = [p for p in ports if p["protocol"] == "http" or p["certificates"]]
    if not ports:
        problem = "no listener can be served: the HTTPS listeners have no usable certificate"
        return GatewayBuild(None, Condition("Accepted", False, "ListenersNotValid", problem), listeners, parents,
                            references, problem)
    used = {c for p in ports for c in p["certificates"]}
    # what the status says, and the generations it is of: a change of either is told again
    generations = [metadata.get("generation"), *((r.get("metadata") or {}).get("generation") for r in routes)]
    digest = hashlib.blake2b(repr((listeners, parents, generations)).encode(), digest_size=8).hexdigest()
    try:
        service = Service.model_validate({
            "key": key, "address": addresses[0].get("value") if addresses else None,
            "traffic_group": annotations.get("traffic-group", DEFAULT_TRAFFIC_GROUP), "ports": ports,
            "backends": list(built.backends.values()), "certificates": [certificates[c] for c in sorted(used)],
            "lb_method": annotations.get("lb-method", DEFAULT_LB_METHOD), "revision": digest})
    except ValidationError as error:
        first = error.errors()[0]
        problem = f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
        return GatewayBuild(None, Condition("Accepted", False, "InvalidParameters", problem), listeners, parents,
                            references, problem)
    return GatewayBuild(service, Condition("Accepted", True, "Accepted"), listeners, parents, references)


def _attach(route: dict[str, Any], ref: dict[str, Any], listeners: list[ListenerState],
            built: _Routes) -> tuple[Condition, Condition]:
    """Attach a route to the listeners its parentRef names: its Accepted and ResolvedRefs conditions."""
    route_namespace = (route.get("metadata") or {}).get("namespace") or ""
    gateway_namespace = ref.get("namespace") or route_namespace
    named = [listener for listener in listeners
             if ref.get("sectionName") in (None, listener.name) and ref.get("port") in (None, listener.port)]
    if not named:
        return (Condition("Accepted", False, "NoMatchingParent", "no listener of that name or port"),
                Condition("ResolvedRefs", True, "ResolvedRefs"))
    allowed = [listener for listener in named if listener.usable and listener.takes_http_routes
               and (listener.routes_from == "All" or gateway_namespace == route_namespace)]
    if not allowed:
        return (Condition("Accepted", False, "NotAllowedByListeners", "no listener takes routes from this namespace"),
                Condition("ResolvedRefs", True, "ResolvedRefs"))
    route_hosts = (route.get("spec") or {}).get("hostnames") or [None]
    resolved, taken = Condition("ResolvedRefs", True, "ResolvedRefs"), []
    for listener in allowed:
        hosts = [h for h in (intersect(listener.hostname, r) for r in route_hosts) if h is not False]
        if not hosts:
            continue
        try:
            made, backends, condition = built.rules(route, listener, hosts)  # type: ignore[arg-type]
        except _Unsupported as error:  # on none of the listeners, then
            return Condition("Accepted", False, "UnsupportedValue", str(error)), resolved
        resolved = condition if not condition.status else resolved
        taken.append((listener, made, backends))
    for listener, made, backends in taken:
        built.take(listener, made, backends)
    if not taken:
        return (Condition("Accepted", False, "NoMatchingListenerHostname", "no listener's hostname matches"),
                resolved)
    return Condition("Accepted", True, "Accepted"), resolved


