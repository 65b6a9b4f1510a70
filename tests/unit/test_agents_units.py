"""The agent's pure parts: a Kubernetes Service as a service, the plan against the partition, address
pools, and sharing by rendezvous hashing."""

import asyncio
import contextlib
import time

import orjson
import pytest

from tandem.agents.addresses import Addresses, parse_pool
from tandem.agents.metrics import Metrics
from tandem.agents.objects import comparable, objects, owner_of
from tandem.agents.partition import PartitionState
from tandem.agents.runtime import MAX_BATCH_BYTES, Agent, Options, owner
from tandem.agents.service import Service
from tandem.agents.sources.k8s_services import Selection, node_of, service_of
from tandem.models import Pool


def k8s_service(ports: list[dict], annotations: dict | None = None, kind: str = "LoadBalancer", **spec) -> dict:
    return {"metadata": {"namespace": "shop", "name": "web", "annotations": annotations or {}},
            "spec": {"type": kind, "ports": ports, "loadBalancerClass": "tandem.io/lb", **spec}}


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


def test_only_load_balancers_of_the_agents_class_are_served() -> None:
    ports = [{"port": 80}]
    assert service_of(k8s_service(ports), []) is not None
    assert service_of(k8s_service(ports, kind="ClusterIP"), []) is None
    assert service_of(k8s_service(ports, {"tandem.io/traffic-group": "tg2"}, kind="ClusterIP"), []) is None
    assert service_of(k8s_service(ports, loadBalancerClass="metallb.io/metallb"), []) is None
    # another class's Service is not read at all: its bad annotations are no problem of Tandem's
    assert service_of(k8s_service(ports, {"tandem.io/colour": "blue"}, loadBalancerClass="other"), []) is None
    unclassed = k8s_service(ports, loadBalancerClass=None)
    assert service_of(unclassed, []) is None
    assert service_of(unclassed, [], Selection(default_class=True)) is not None
    assert service_of(k8s_service(ports, loadBalancerClass="example.com/edge"), [],
                      Selection("example.com/edge")) is not None


def k8s_node(name: str, address: str, ready: bool = True, **labels: str) -> dict:
    return {"metadata": {"name": name, "labels": labels},
            "status": {"addresses": [{"type": "Hostname", "address": name}, {"type": "InternalIP", "address": address}],
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


NODES = [node_of(k8s_node("n1", "192.0.2.1")), node_of(k8s_node("n2", "192.0.2.2")),
         node_of(k8s_node("n3", "192.0.2.3", ready=False)),
         node_of(k8s_node("n4", "192.0.2.4", **{"node.kubernetes.io/exclude-from-external-load-balancers": ""}))]


def test_in_nodeport_mode_the_members_are_the_usable_nodes_at_the_nodeport() -> None:
    ports = [{"name": "http", "port": 80, "nodePort": 30080}]
    slices = [{"ports": [{"name": "http", "port": 8080}],
               "endpoints": [{"addresses": ["10.244.1.7"], "conditions": {"ready": True}, "nodeName": "n2"},
                             {"addresses": ["10.244.3.9"], "conditions": {"ready": True}, "nodeName": "n3"}]}]

    def members(service: dict, mode: str = "nodeport") -> list[tuple[str, int]]:
        built = service_of(service, slices, nodes=NODES, member_mode=mode)
        assert built is not None
        return [(m.address, m.port) for m in built.ports[0].members]

    assert members(k8s_service(ports)) == [("192.0.2.1", 30080), ("192.0.2.2", 30080)]  # n3 not ready, n4 excluded
    assert members(k8s_service(ports, externalTrafficPolicy="Local")) == [("192.0.2.2", 30080)]
    assert members(k8s_service(ports), "endpoints") == [("10.244.1.7", 8080), ("10.244.3.9", 8080)]
    assert members(k8s_service(ports, {"tandem.io/member-mode": "endpoints"})) == [("10.244.1.7", 8080),
                                                                                   ("10.244.3.9", 8080)]
    assert members(k8s_service(ports, {"tandem.io/member-mode": "nodeport"}), "endpoints") == [
        ("192.0.2.1", 30080), ("192.0.2.2", 30080)]
    with pytest.raises(ValueError, match="port 80: no nodePort"):
        service_of(k8s_service([{"port": 80}]), slices, nodes=NODES, member_mode="nodeport")
    with pytest.raises(ValueError, match="member-mode 'pods': endpoints or nodeport"):
        service_of(k8s_service(ports, {"tandem.io/member-mode": "pods"}), slices, nodes=NODES)


@pytest.mark.parametrize(("selection", "says"), [
    ({"load_balancer_class": "bad class"}, "--load-balancer-class"),
    ({"namespaces": ("Shop",)}, "--namespace"),
    ({"selector": "app in (web)"}, "--selector"),
    ({"selector": "app=web;x"}, "--selector"),
])
def test_a_bad_selection_is_refused(selection: dict, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        Selection(**selection)


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
    given = [addresses.resolve(service(f"shop/s{i}"), state, lambda a: True, unshared)[0] for i in range(4)]
    assert sorted(given) == pool, "four services, four different addresses"
    assert addresses.resolve(service("shop/s5"), state, lambda a: True, unshared) == (
        None, "the address pool of traffic group traffic-group-1 is exhausted")
    addresses.begin()
    mine = addresses.resolve(service("shop/s6"), state, lambda a: a == "10.9.0.3", unshared)
    assert mine == ("10.9.0.3", None)


def unshared(key: str) -> None:
    return None


def test_services_of_one_sharing_key_share_an_address_on_different_ports() -> None:
    _, pool = parse_pool("traffic-group-1=10.9.0.1-10.9.0.8")
    addresses, state = Addresses({"traffic-group-1": pool}, "prod"), PartitionState("apps", "prod")
    state.load({})
    dns_tcp, dns_other = shared("dns/tcp", 53, "dns"), shared("dns/other", 53, "dns")
    web = shared("web/front", 80, "dns")
    sharing = {s.key: s.sharing_key for s in (dns_tcp, dns_other, web)}
    assert dns_tcp.owner_key == web.owner_key == "share/dns"
    for first in (dns_tcp, web):  # written in one reconcile, or the first already in the partition
        addresses.begin()
        address, problem = addresses.resolve(first, state, lambda a: True, sharing.get)
        assert problem is None
        state.applied(state.plan(first.key, objects(first, address, "apps", "prod"))[0])
    assert state.address_of("dns/tcp") == state.address_of("web/front")
    addresses.begin()
    assert "port 53" in addresses.resolve(dns_other, state, lambda a: True, sharing.get)[1]
    alone = service("shop/alone").model_copy(update={"address": state.address_of("dns/tcp")})
    assert "taken" in addresses.resolve(alone, state, lambda a: True, sharing.get)[1]


def shared(key: str, port: int, sharing_key: str) -> Service:
    return Service.model_validate({"key": key, "sharing_key": sharing_key, "ports": [{"port": port}]})


def test_rendezvous_moves_only_the_share_of_the_agent_that_left() -> None:
    keys = [f"shop/s{i}" for i in range(300)]
    before = {k: owner(k, ["a", "b", "c"]) for k in keys}
    after = {k: owner(k, ["a", "c"]) for k in keys}
    moved = [k for k in keys if before[k] != after[k]]
    assert moved and all(before[k] == "b" for k in moved)
    assert 60 < sum(1 for k in keys if before[k] == "b") < 140
    assert owner("shop/s1", []) is None


def test_an_ipv6_service_takes_an_ipv6_address_of_a_dual_stack_pool() -> None:
    _, v4 = parse_pool("traffic-group-1=10.9.0.1-10.9.0.2")
    _, v6 = parse_pool("traffic-group-1=2001:db8::1-2001:db8::2")
    addresses, state = Addresses({"traffic-group-1": v4 + v6}, "prod"), PartitionState("apps", "prod")
    state.load({})
    addresses.begin()
    six = service_of(k8s_service([{"port": 80}], ipFamilies=["IPv6", "IPv4"], ipFamilyPolicy="RequireDualStack"), [])
    four = service_of(k8s_service([{"port": 80}], ipFamilies=["IPv4"]), [])
    assert six is not None and four is not None and six.ip_family == 6
    assert "IPv6 only" in six.warnings[0][1]
    assert addresses.resolve(six, state, lambda a: True, unshared)[0] in v6
    assert addresses.resolve(four, state, lambda a: True, unshared)[0] in v4


def test_large_plans_are_written_in_batches_under_the_request_size_each_holding_whole_services() -> None:
    class Devices:
        def __init__(self) -> None:
            self.sizes: list[tuple[int, set[str]]] = []

        async def call(self, request):
            return request(self)

        def batch(self, operations: list[dict], fence: object) -> None:
            names = {op["name"].rsplit("-", 1)[0] for op in operations}
            self.sizes.append((len(orjson.dumps(operations)), names))

    class Leases:
        token = epoch = None

    devices = Devices()
    agent = Agent(Options("prod", "a", "apps"), None, Leases(), devices, None, Metrics())  # type: ignore[arg-type]
    agent.lease_until = time.monotonic() + 60
    state = PartitionState("apps", "prod")
    state.load({})
    plans = {f"shop/web{i}": state.plan(f"shop/web{i}", objects(service(f"shop/web{i}", members=200), f"10.9.{i}.1",
                                                                  "apps", "prod"))[0] for i in range(40)}
    asyncio.run(agent._write(plans))
    assert len(devices.sizes) > 1 and all(size <= MAX_BATCH_BYTES for size, _ in devices.sizes)  # 1 MiB refused
    written = [name for _, names in devices.sizes for name in names]
    assert sorted(written) == sorted(f"shop_web{i}" for i in range(40))  # each service whole, in one batch


def test_the_lease_is_renewed_during_a_long_reconcile_and_a_new_view_published_after_it() -> None:
    """A reconcile holds the agent's writing for as long as it takes (an agent that joins plans and writes
    thousands of services): the lease is renewed meanwhile with the view already published, and the new
    view is published only once that reconcile is over (nothing is written under the old one after)."""
    class Source:
        errors: dict[str, str] = {}
        kind = "file"

    class Devices:
        url = "https://device"

    class Leases:
        token = epoch = None

        def __init__(self) -> None:
            self.published: list[tuple[str, ...]] = []

        async def acquire(self, name: str, holder: str, ttl: float, status=None) -> bool:
            self.published.append(status.view)
            return True

    async def scenario() -> None:
        leases = Leases()
        agent = Agent(Options("prod", "a", "apps", lease_ttl=1.0), Source(), leases, Devices(), None,  # type: ignore[arg-type]
                      Metrics())
        agent.view = ["a"]
        assert await agent._renew() and leases.published == [("a",)]
        async with agent._writing:  # a reconcile under the view ["a"]
            agent.view = ["a", "b"]
            for _ in range(3):
                assert await asyncio.wait_for(agent._renew(), 0.5)
                assert agent.holds_lease() and agent.published == ["a"]
        assert await agent._renew()
        assert agent.published == ["a", "b"] and leases.published == [("a",)] * 4 + [("a", "b")]

    asyncio.run(scenario())


def test_a_udp_service_gets_its_members_as_a_tcp_one_does() -> None:
    udp = Service.model_validate({"key": "dns/resolver", "ports": [{"port": 53, "protocol": "udp", "members": [
        {"address": "10.0.0.1", "port": 5353}]}]})
    made = objects(udp, "10.9.0.2", "apps", "prod")
    [virtual] = [o for o in made.values() if o.kind == "virtuals"]
    [pool] = [o for o in made.values() if o.kind == "pools"]
    assert virtual.protocol == "udp" and virtual.pool == pool.name
    assert [(m.address, m.port) for m in pool.members] == [("10.0.0.1", 5353)]


def test_a_source_slow_to_give_its_first_picture_holds_up_the_round_not_the_event_loop() -> None:
    """The Kubernetes source's first `take_changed` waits for a rebuild (seconds at 10,000 services): the round
    waits, and the event loop, which renews the lease, goes on turning."""
    import threading

    released = threading.Event()

    class Source:
        errors: dict[str, str] = {}
        kind = "kubernetes"

        def take_changed(self) -> set[str]:
            released.wait(5)
            return set()

    class Leases:
        token = epoch = None

    async def scenario() -> float:
        agent = Agent(Options("prod", "a", "apps"), Source(), Leases(), None, None, Metrics())  # type: ignore[arg-type]
        agent.state.stale = False
        agent._moves_seen = 0
        round_ = asyncio.create_task(agent.reconcile())
        started = time.perf_counter()
        await asyncio.sleep(0.05)
        turned = time.perf_counter() - started
        released.set()
        round_.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await round_
        return turned

    threading.Timer(2.0, released.set).start()
    assert asyncio.run(scenario()) < 1.0


def test_services_changed_while_another_agent_wrote_them_are_written_first_when_taken_over() -> None:
    """Agent a shares the work with b; services of b's share change; b leaves: a writes those before it even plans
    the rest of b's share (a takeover of thousands of services held their changes for that long)."""
    def web(i: int, members: int = 1) -> Service:
        return Service.model_validate({"key": f"shop/web{i}", "address": f"10.9.0.{i}", "ports": [{"port": 80,
                                       "members": [{"address": f"10.0.0.{m}", "port": 8080}
                                                   for m in range(1, members + 1)]}]})

    class Source:
        errors: dict[str, str] = {}
        kind = "file"

        def __init__(self) -> None:
            self.services = {f"shop/web{i}": web(i) for i in range(1, 41)}
            self.present = set(self.services)
            self.changed: set[str] | None = None

        def take_changed(self) -> set[str] | None:
            changed, self.changed = self.changed, set()
            return changed

    class Devices:
        moves = 0

        def __init__(self) -> None:
            self.batches: list[set[str]] = []

        async def call(self, request):
            return request(self)

        def batch(self, operations: list[dict], fence: object) -> None:
            self.batches.append({op["name"].rsplit("-", 1)[0] for op in operations})

    class Leases:
        token = epoch = None

    source, devices = Source(), Devices()
    agent = Agent(Options("prod", "a", "apps"), source, Leases(), devices, Addresses({}, "prod"),  # type: ignore[arg-type]
                  Metrics())
    agent.state.load({})
    agent._moves_seen = 0
    agent.lease_until = time.monotonic() + 60
    agent.published, agent.others = ["a", "b"], {"b": ["a", "b"]}
    agent._views = (agent.published, agent.others)
    theirs = sorted(key for key in source.services if owner(key, ["a", "b"]) == "b")
    changed = set(theirs[:3])

    async def scenario() -> None:
        await agent.reconcile()  # a's share
        source.services |= {key: web(int(key.removeprefix("shop/web")), members=2) for key in changed}
        source.changed = set(changed)
        await agent.reconcile(full=False)  # b's to write
        assert devices.batches == [{key.replace("/", "_") for key in source.services if key not in theirs}]
        devices.batches.clear()
        agent.published, agent.others = ["a"], {}  # b is gone
        await agent.reconcile(full=False)

    asyncio.run(scenario())
    assert devices.batches[0] == {key.replace("/", "_") for key in changed}, devices.batches
    assert set().union(*devices.batches[1:]) == {key.replace("/", "_") for key in theirs} - devices.batches[0]
