"""Gateways and HTTPRoutes as services (pure): listeners and their conditions, hostnames, matches and their
precedence, weighted backends, redirects, and what is not served said on the route's parent."""

import re

from k8s.fakeapi import make_endpoint_slice, make_gateway, make_http_route, make_service, make_tls_secret
from pki import TestCA
from tandem.agents.sources.k8s_gateway import gateway_service, intersect
from tandem.agents.sources.k8s_ingress import ClusterView, tls_pair

CA = TestCA()
HTTP = {"name": "web", "port": 80, "protocol": "HTTP"}


def view(secrets: dict | None = None) -> ClusterView:
    endpoints = {"blue": ["10.1.0.1", "10.1.0.2", "10.1.0.3"], "green": ["10.2.0.1"]}
    services = {("default", name): make_service(name, ports=[{"name": "http", "port": 80}], service_type="ClusterIP")
                for name in endpoints}
    slices = {("default", name): {("default", name): make_endpoint_slice(name, addresses, ports=[
        {"name": "http", "port": 8080}])} for name, addresses in endpoints.items()}
    return ClusterView(services, slices, [], secrets or {})


def to(*refs: tuple[str, int]) -> list[dict]:
    return [{"name": name, "port": 80, "weight": weight} for name, weight in refs]


def build(listeners: list[dict], routes: list[dict], secrets: dict | None = None):
    return gateway_service("gateway:default/gw", make_gateway("gw", listeners), routes, view(secrets))


def test_weighted_backends_share_the_traffic_by_weight_not_by_member_count() -> None:
    route = make_http_route("r", "gw", [{"backendRefs": to(("blue", 3), ("green", 1))}])
    built = build([HTTP], [route])
    (backend,) = built.service.backends
    weights = {m.address: m.weight for m in backend.members}
    blue = sum(w for a, w in weights.items() if a.startswith("10.1."))
    assert len(weights) == 4 and weights["10.2.0.1"] == 256  # one member carries green's whole quarter
    assert abs(blue / weights["10.2.0.1"] - 3) < 0.05
    (parent,) = built.parents
    assert parent.accepted.status and parent.resolved.status and built.listeners[0].attached == 1


def test_matches_hostnames_and_precedence() -> None:
    routes = [make_http_route("a", "gw", [{"matches": [{"path": {"type": "PathPrefix", "value": "/api"}},
                                                       {"path": {"type": "Exact", "value": "/login"},
                                                        "method": "POST"}],
                                           "backendRefs": to(("blue", 1))},
                                          {"matches": [{"headers": [{"name": "x-canary", "value": "1"}]}],
                                           "backendRefs": to(("green", 1))}],
                              hostnames=["shop.example.com", "other.org"])]
    listener = HTTP | {"hostname": "*.example.com"}
    built = build([listener], routes)
    rules = built.service.ports[0].routes
    assert {r.match.host for r in rules} == {"shop.example.com"}  # other.org never meets the listener
    assert [(r.match.path_type, r.match.path) for r in rules][:2] == [("exact", "/login"),
                                                                      ("regex", r"^/api(/.*)?$")]
    assert rules[0].match.methods == ["POST"] and rules[-1].match.headers[0].name == "x-canary"
    assert re.match(rules[1].match.path, "/api/v1") and not re.match(rules[1].match.path, "/apiv1")
    assert intersect("*.example.com", "a.example.com") == "a.example.com"
    assert intersect("a.example.com", "*.example.com") == "a.example.com"
    assert intersect("a.example.com", "b.example.com") is False and intersect(None, None) is None


def test_redirects_and_what_is_not_served() -> None:
    redirect = {"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}
    routes = [make_http_route("up", "gw", [{"filters": [redirect]}], hostnames=["shop.example.com"]),
              make_http_route("odd", "gw", [{"filters": [{"type": "URLRewrite"}], "backendRefs": to(("blue", 1))}]),
              make_http_route("lost", "gw", [{"backendRefs": to(("missing", 1))}], hostnames=["lost.example.com"]),
              make_http_route("nowhere", "gw", [{"backendRefs": to(("blue", 1))}], section="nope")]
    built = build([HTTP], routes)
    (rule,) = [r for r in built.service.ports[0].routes if r.location]
    assert (rule.location, rule.status) == ("https://shop.example.com/", 301)
    conditions = {p.route[1]: (p.accepted.reason, p.resolved.reason) for p in built.parents}
    assert conditions == {"up": ("Accepted", "ResolvedRefs"), "odd": ("UnsupportedValue", "ResolvedRefs"),
                          "lost": ("Accepted", "BackendNotFound"), "nowhere": ("NoMatchingParent", "ResolvedRefs")}


def test_listeners_https_certificates_conflicts_and_protocols() -> None:
    issued = CA.issue("shop.example.com", "shop.example.com")
    secrets = {("default", "shop"): tls_pair(make_tls_secret("shop", issued.chain, issued.key))}
    https = {"name": "tls", "port": 443, "protocol": "HTTPS", "tls": {"certificateRefs": [{"name": "shop"}]}}
    broken = {"name": "tls2", "port": 8443, "protocol": "HTTPS", "tls": {"certificateRefs": [{"name": "none"}]}}
    tcp = {"name": "raw", "port": 9000, "protocol": "TCP"}
    clash = {"name": "clash", "port": 443, "protocol": "HTTP"}
    built = build([HTTP, https, broken, tcp], [make_http_route("r", "gw", [{"backendRefs": to(("blue", 1))}])],
                  secrets)
    assert [(p.port, p.protocol) for p in built.service.ports] == [(80, "http"), (443, "https")]
    states = {listener.name: listener for listener in built.listeners}
    assert states["tls2"].resolved.reason == "InvalidCertificateRef"
    assert states["raw"].accepted.reason == "UnsupportedProtocol"
    assert [c.reason for c in states["tls"].conditions()] == ["Accepted", "ResolvedRefs", "Programmed", "NoConflicts"]
    assert states["web"].attached == states["tls"].attached == 1
    clashing = build([https, clash], [], secrets)
    assert clashing.service is None and clashing.accepted.reason == "ListenersNotValid"
    assert {listener.conflicted.reason for listener in clashing.listeners} == {"ProtocolConflict"}


def test_small_shares_still_get_traffic_and_redirects_keep_the_listeners_port() -> None:
    built = build([HTTP], [make_http_route("r", "gw", [{"backendRefs": to(("blue", 1), ("green", 2000))}])])
    assert min(m.weight for m in built.service.backends[0].members) == 1
    plain = {"name": "alt", "port": 8080, "protocol": "HTTP"}
    redirect = {"type": "RequestRedirect", "requestRedirect": {"hostname": "new.example.com"}}
    moved = build([plain], [make_http_route("r", "gw", [{"filters": [redirect]}])])
    assert moved.service.ports[0].routes[0].location == "http://new.example.com:8080/"


def test_a_route_unsupported_anywhere_is_attached_nowhere_and_kinds_are_respected() -> None:
    other = {"name": "other", "port": 8080, "protocol": "HTTP"}
    odd = make_http_route("odd", "gw", [{"matches": [{"queryParams": [{"name": "a", "value": "b"}]}],
                                         "backendRefs": to(("blue", 1))}])
    built = build([HTTP, other], [odd, make_http_route("ok", "gw", [{"backendRefs": to(("green", 1))}])])
    assert [listener.attached for listener in built.listeners] == [1, 1] and len(built.service.backends) == 1
    tcp_only = HTTP | {"allowedRoutes": {"kinds": [{"kind": "TCPRoute"}]}}
    refused = build([tcp_only, other], [make_http_route("r", "gw", [{"backendRefs": to(("blue", 1))}],
                                                        section="web")])
    assert refused.parents[0].accepted.reason == "NotAllowedByListeners"
