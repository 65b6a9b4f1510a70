"""The agent's pure parts: a Kubernetes Service as a service, the plan against the partition, address
pools, and sharing by rendezvous hashing."""

import pytest

from tandem.agents.addresses import Addresses, parse_pool
from tandem.agents.objects import comparable, objects, owner_of
from tandem.agents.partition import PartitionState
from tandem.agents.runtime import owner
from tandem.agents.service import Service
from tandem.agents.sources.kubernetes import service_of
from tandem.models import Pool


def k8s_service(ports: list[dict], annotations: dict | None = None, kind: str = "LoadBalancer", **spec) -> dict:
    return {"metadata": {"namespace": "shop", "name": "web", "annotations": annotations or {}},
            "spec": {"type": kind, "ports": ports, **spec}}


def slice_of(endpoints: list[tuple[str, bool]], port: int = 8080, name: str = "http") -> dict:
    return {"ports": [{"name": name, "port": port}],
            "endpoints": [{"addresses": [a], "conditions": {"ready": ready}} for a, ready in endpoints]}


def test_a_service_takes_the_ready_endpoints_of_the_port_named_alike() -> None:
    service = service_of(k8s_service([{"name": "http", "port": 80}], {"tandem.io/monitor": "http",
                                                                       "tandem.io/monitor-path": "/health"}),
                         [slice_of([("10.0.0.2", True), ("10.0.0.1", True), ("10.0.0.3", False)]),
                          slice_of([("10.0.0.9", True)], name="other")])
    assert service is not None and service.key == "shop/web"
    assert [(m.address, m.port) for m in service.ports[0].members] == [("10.0.0.1", 8080), ("10.0.0.2", 8080)]
    assert service.monitor is not None and service.monitor.path == "/health"


def test_services_not_for_tandem_are_ignored() -> None:
    assert service_of(k8s_service([{"port": 80}], kind="ClusterIP"), []) is None
    assert service_of(k8s_service([{"port": 80}], {"tandem.io/traffic-group": "tg2"}, kind="ClusterIP"), []) \
        is not None


@pytest.mark.parametrize(("ports", "annotations", "says"), [
    ([{"port": 0}], {}, "ports.0.port"),
    ([{"port": 70000}], {}, "ports.0.port"),
    ([{"port": 53, "protocol": "UDP"}], {}, "protocol UDP"),
    ([{"port": 80}], {"tandem.io/monitor": "icmp"}, "monitor.type"),
    ([{"port": 80}], {"tandem.io/monitor": "tcp", "tandem.io/monitor-interval": "soon"}, "monitor.interval"),
    ([{"port": 80}], {"tandem.io/address": "10.0.0.300"}, "address"),
    ([{"port": 80}], {"tandem.io/lb-method": "fastest"}, "lb_method"),
    ([{"port": 80}], {"tandem.io/colour": "blue"}, "unknown annotation tandem.io/colour"),
    ([], {}, "ports"),
])
def test_a_malformed_service_says_what_is_wrong(ports: list, annotations: dict, says: str) -> None:
    with pytest.raises(ValueError, match=says.replace(".", r"\.")):
        service_of(k8s_service(ports, annotations), [])


def service(key: str = "shop/web", members: int = 1) -> Service:
    return Service.model_validate({"key": key, "ports": [{"port": 80, "members": [
        {"address": f"10.0.0.{i}", "port": 8080} for i in range(1, members + 1)]}]})


def test_the_plan_writes_only_the_difference_and_touches_nothing_unmarked() -> None:
    state = PartitionState("apps", "prod")
    wanted = objects(service(), "10.9.0.1", "apps", "prod")
    state.load({})
    operations, problem = state.plan("shop/web", wanted)
    assert problem is None and [op.resource for op in operations] == ["pools", "virtuals"]
    state.applied(operations)
    assert state.plan("shop/web", wanted) == ([], None)
    scaled = objects(service(members=2), "10.9.0.1", "apps", "prod")
    assert [op.resource for op in state.plan("shop/web", scaled)[0]] == ["pools"]
    assert [(op.action, op.resource) for op in state.plan("shop/web", {})[0]] == [
        ("delete", "virtuals"), ("delete", "pools")]
    other = PartitionState("apps", "prod")
    other.load({("pools", "shop_web-80"): comparable("pools", {"name": "shop_web-80", "description": "made by hand"})})
    assert "not the agent's" in other.plan("shop/web", wanted)[1]
    assert owner_of(Pool(name="shop_web-80", description="managed by tandem agent test: shop/web"), "prod") is None


def test_an_address_pool_is_given_out_once_and_only_by_the_agent_it_belongs_to() -> None:
    group, pool = parse_pool("tg=10.9.0.1-10.9.0.4")
    assert group == "tg" and pool == ["10.9.0.1", "10.9.0.2", "10.9.0.3", "10.9.0.4"]
    with pytest.raises(ValueError):
        parse_pool("tg=10.9.0.4-10.9.0.1")
    addresses = Addresses({"traffic-group-1": pool}, "prod")
    state = PartitionState("apps", "prod")
    state.load({})
    addresses.begin()
    given = [addresses.resolve(service(f"shop/s{i}"), state, lambda a: True)[0] for i in range(4)]
    assert sorted(given) == pool, "four services, four different addresses"
    assert addresses.resolve(service("shop/s5"), state, lambda a: True) == (
        None, "the address pool of traffic group traffic-group-1 is exhausted")
    addresses.begin()
    mine = addresses.resolve(service("shop/s6"), state, lambda a: a == "10.9.0.3")
    assert mine == ("10.9.0.3", None)


def test_rendezvous_moves_only_the_share_of_the_agent_that_left() -> None:
    keys = [f"shop/s{i}" for i in range(300)]
    before = {k: owner(k, ["a", "b", "c"]) for k in keys}
    after = {k: owner(k, ["a", "c"]) for k in keys}
    moved = [k for k in keys if before[k] != after[k]]
    assert moved and all(before[k] == "b" for k in moved)
    assert 60 < sum(1 for k in keys if before[k] == "b") < 140
    assert owner("shop/s1", []) is None
