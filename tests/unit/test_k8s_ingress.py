"""Ingresses as services (pure): classes, grouping, rule order and path semantics, backends in both member
modes, TLS Secrets, conflicts decided by age with warnings, and the objects they make."""

import re

import pytest

from k8s.fakeapi import make_endpoint_slice, make_ingress, make_ingress_class, make_node, make_service, make_tls_secret
from pki import TestCA
from tandem.agents.objects import comparable, objects
from tandem.agents.partition import PartitionState
from tandem.agents.sources.k8s_ingress import (
    ClusterView,
    claims,
    group_key,
    ingress_service,
    path_match,
    tandem_classes,
    tls_pair,
)
from tandem.agents.sources.k8s_services import node_of
from tandem.models import Certificate, Pool, VirtualServer

CA = TestCA()


def view(secrets: dict | None = None, member_mode: str = "endpoints") -> ClusterView:
    services = {("default", name): make_service(name, ports=[{"name": "http", "port": 80, "nodePort": 30080}],
                                                service_type="ClusterIP")
                for name in ("web", "api", "fallback")}
    slices = {("default", name): {("default", f"{name}-s"): make_endpoint_slice(
        name, [address], ports=[{"name": "http", "port": 8080}], node_names={address: "n1"})}
        for name, address in (("web", "10.1.0.1"), ("api", "10.1.0.2"), ("fallback", "10.1.0.3"))}
    nodes = [node_of(make_node("n1", "192.0.2.1")), node_of(make_node("n2", "192.0.2.2", ready=False))]
    return ClusterView(services, slices, nodes, secrets or {}, member_mode)


def aged(ingress: dict, when: str) -> dict:
    ingress["metadata"]["creationTimestamp"] = when
    return ingress


def test_only_ingresses_of_tandems_classes_are_claimed() -> None:
    classes = tandem_classes([make_ingress_class("tandem"), make_ingress_class("nginx", "k8s.io/ingress-nginx")])
    assert classes == (frozenset({"tandem"}), False)
    assert claims(make_ingress("a", []), *classes)
    assert not claims(make_ingress("a", [], ingress_class="nginx"), *classes)
    assert not claims(make_ingress("a", [], ingress_class=None), *classes)
    default = tandem_classes([make_ingress_class("tandem", default=True)])
    assert claims(make_ingress("a", [], ingress_class=None), *default)
    legacy = make_ingress("a", [], ingress_class=None, annotations={"kubernetes.io/ingress.class": "tandem"})
    assert claims(legacy, *classes)


def test_rules_are_ordered_as_kubernetes_says_and_prefixes_are_element_wise() -> None:
    ingress = make_ingress("site", [(None, "/", "fallback", 80), ("shop.example.com", "/api", "api", "http"),
                                    ("shop.example.com", "/", "web", 80), ("*.example.com", "/x", "web", 80)])
    service = ingress_service(group_key(ingress), [ingress], view())
    assert service.key == "ingress:default/site" and not service.warnings
    (http,) = service.ports
    assert http.port == 80 and http.protocol == "http"
    order = [(r.match.host, r.match.path) for r in http.routes]
    assert order == [("shop.example.com", r"^/api(/.*)?$"), ("shop.example.com", None),
                     ("*.example.com", r"^/x(/.*)?$"), (None, None)]
    prefix = re.compile(path_match("/api/", "Prefix")["path"])
    assert [bool(prefix.match(p)) for p in ("/api", "/api/", "/api/v1", "/apis")] == [True, True, True, False]
    assert path_match("/a", "Exact") == {"path": "/a", "path_type": "exact"}
    assert path_match("/a", "ImplementationSpecific") == {"path": "/a", "path_type": "prefix"}
    backends = {b.name: [(m.address, m.port) for m in b.members] for b in service.backends}
    assert backends[http.routes[0].backend] == [("10.1.0.2", 8080)]


def test_member_mode_nodeport_sends_to_ready_nodes() -> None:
    ingress = make_ingress("site", [(None, "/", "web", 80)], annotations={"tandem.io/member-mode": "nodeport"})
    service = ingress_service(group_key(ingress), [ingress], view())
    assert [(m.address, m.port) for m in service.backends[0].members] == [("192.0.2.1", 30080)]


def test_ingresses_sharing_a_key_merge_and_the_older_wins_a_conflict() -> None:
    shared = {"tandem.io/sharing-key": "front"}
    old = aged(make_ingress("old", [("a.example.com", "/", "web", 80)], annotations=shared,
                            default_backend=("fallback", 80)), "2026-01-01T00:00:00Z")
    young = aged(make_ingress("young", [("a.example.com", "/", "api", 80), ("b.example.com", "/", "api", 80)],
                              "other", annotations=shared, default_backend=("api", 80)), "2026-02-01T00:00:00Z")
    assert group_key(old) == group_key(young) == "ingress:share.front"
    service = ingress_service("ingress:share.front", [young, old], view())
    hosts = [r.match.host for r in service.ports[0].routes]
    assert hosts == ["a.example.com", "b.example.com"]
    assert {owner for owner, _ in service.warnings} == {"other/young"}
    warned = " ".join(message for _, message in service.warnings)
    assert "default/old" in warned and "default backend" in warned
    assert "does not exist" in warned  # other/api: young's Services live in its own namespace


def test_tls_from_secrets_and_bad_secrets_are_warnings() -> None:
    issued = CA.issue("shop.example.com", "shop.example.com")
    good = tls_pair(make_tls_secret("shop-tls", issued.chain, issued.key))
    other = CA.issue("x.example.com")
    assert isinstance(tls_pair(make_tls_secret("bad", issued.chain, other.key)), str)
    assert "type" in tls_pair({"type": "Opaque", "metadata": {}})
    secrets = {("default", "shop-tls"): good, ("default", "bad"): tls_pair(make_tls_secret("bad", issued.chain,
                                                                                           other.key))}
    ingress = make_ingress("site", [("shop.example.com", "/", "web", 80)], annotations={"tandem.io/https-port": "8443"},
                           tls=[(["shop.example.com"], "shop-tls"), (["x.example.com"], "bad"), ([], "missing")])
    service = ingress_service(group_key(ingress), [ingress], view(secrets))
    assert [(p.port, p.protocol) for p in service.ports] == [(80, "http"), (8443, "https")]
    assert len(service.certificates) == 1 and service.ports[1].certificates == [service.certificates[0].name]
    assert sorted(m.split(" ")[2] for _, m in service.warnings) == ["default/bad", "default/missing"]
    made = objects(service, "10.9.0.1", "apps", "prod")
    kinds = sorted(type(o).__name__ for o in made.values())
    assert kinds == ["Certificate", "Pool", "VirtualServer", "VirtualServer"]
    https = next(o for o in made.values() if isinstance(o, VirtualServer) and o.protocol == "https")
    certificate = next(o for o in made.values() if isinstance(o, Certificate))
    pool = next(o for o in made.values() if isinstance(o, Pool))
    assert https.certificates == [certificate.name] and https.rules[0].pool == pool.name
    # the key is write-only: what the device gives back (no key, computed fields) is the same object
    state = PartitionState("apps", "prod")
    read = {k: comparable(k[0], o.model_dump(exclude={"key"})) for k, o in made.items()}
    state.load(read)
    assert state.plan(service.key, made) == ([], None)
    renewed = CA.issue("shop.example.com", "shop.example.com")
    secrets[("default", "shop-tls")] = tls_pair(make_tls_secret("shop-tls", renewed.chain, renewed.key))
    again = objects(ingress_service(group_key(ingress), [ingress], view(secrets)), "10.9.0.1", "apps", "prod")
    (operation,) = state.plan(service.key, again)[0]
    assert operation.resource == "certificates" and operation.json()["body"]["key"] == renewed.key


@pytest.mark.parametrize(("annotations", "rules", "says"), [
    ({"tandem.io/colour": "red"}, [(None, "/", "web", 80)], "unknown annotation"),
    ({"tandem.io/http-port": "eighty"}, [(None, "/", "web", 80)], "http-port"),
    ({}, [("Bad_Host", "/", "web", 80)], "host"),
    ({}, [], "no rules"),
])
def test_a_bad_ingress_says_what_is_wrong(annotations: dict, rules: list, says: str) -> None:
    ingress = make_ingress("site", rules, annotations=annotations)
    with pytest.raises(ValueError, match=says):
        ingress_service(group_key(ingress), [ingress], view())
