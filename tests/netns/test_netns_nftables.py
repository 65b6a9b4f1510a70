"""The kernel engine (`NftablesEngine`) on a real routed network (`kernellab.py`): tcp and udp virtual servers
balanced by the kernel, members down and back by their monitor, drain, both `snat` modes, counters, and a
ruleset changed under load without a failed request.

Needs root, iproute2 and nft (skipped otherwise; CI runs as root).
"""

import shutil
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator

import pytest
from kernellab import BACKEND, BACKEND_PORT, MEMBERS, VIP, KernelLab, ask_tcp, ask_udp, unavailable
from netlab import ADDR, TRAFFIC_GROUP, Lab, check, formed, kill_group, sh

from tandem.dataplane.engine import ServedMember, ServedPool, ServedVirtual
from tandem.dataplane.monitor import MonitorConfig
from tandem.dataplane.nftables_engine import NOT_FORWARDING, NftablesEngine
from tandem.dataplane.nftables_rules import NOT_LAYER4
from waiting import wait_until

pytestmark = pytest.mark.skipif(unavailable() is not None, reason=unavailable() or "")

TCP_MONITOR = MonitorConfig(type="tcp", interval=0.1, timeout=0.2)


def pool(name: str = "web", *, weights: tuple[int, int] = (1, 1), states: tuple[str, str] = ("enabled", "enabled"),
         monitor: MonitorConfig | None = None, lb_method: str = "round-robin") -> ServedPool:
    members = tuple(ServedMember(address, BACKEND_PORT, state=state, weight=weight)
                    for address, weight, state in zip(MEMBERS.values(), weights, states, strict=True))
    return ServedPool("Common", name, lb_method=lb_method, members=members, monitor=monitor)


def tcp(served: ServedPool, **options) -> ServedVirtual:
    return ServedVirtual("Common", "tcp", VIP, 80, served, **options)


def udp(served: ServedPool, **options) -> ServedVirtual:
    return ServedVirtual("Common", "udp", VIP, 53, served, protocol="udp", **options)


@pytest.fixture(scope="module")
def lab() -> Iterator[KernelLab]:
    lab = KernelLab()
    try:
        yield lab.build()
    finally:
        lab.close()


@pytest.fixture
def engine(lab: KernelLab) -> Iterator[NftablesEngine]:
    engine = lab.on_device(_engine())
    yield engine
    lab.on_device(engine.stop_all(0))
    for name in MEMBERS:
        if name not in lab.backends:
            lab.start_backend(name)


async def _engine() -> NftablesEngine:
    return NftablesEngine()


def answers(lab: KernelLab, ask, count: int) -> Counter:
    return Counter(lab.client.run(ask)[0] for _ in range(count))


def test_tcp_and_udp_are_balanced_by_weight_and_counted(lab: KernelLab, engine: NftablesEngine) -> None:
    web = pool(weights=(1, 3))
    lab.on_device(engine.apply([tcp(web), udp(pool("dns"))]))
    assert engine.errors == {}
    assert answers(lab, ask_tcp, 8) == {"m1": 2, "m2": 6}  # round robin over the weights' ranges
    assert answers(lab, ask_udp, 4) == {"m1": 2, "m2": 2}
    _, seen = lab.client.run(ask_tcp)
    assert seen == "10.71.0.2"  # snat none: the member sees the client
    lab.on_device(engine.refresh_stats())
    stats = engine.stats()
    assert stats["virtuals"]["/Common/tcp"]["connections_total"] == 9
    assert stats["virtuals"]["/Common/udp"]["connections_total"] == 4
    assert stats["virtuals"]["/Common/tcp"]["listening"] is True
    members = stats["pools"]["/Common/web"]
    assert sum(m["connections_total"] for m in members.values()) == 9
    assert "table inet tandem" in lab.nft("list", "tables")


def test_a_member_down_by_its_monitor_gets_nothing_until_it_is_back(lab: KernelLab, engine: NftablesEngine) -> None:
    lab.on_device(engine.apply([tcp(pool(monitor=TCP_MONITOR))]))
    wait_until(lambda: answers(lab, ask_tcp, 4) == {"m1": 2, "m2": 2}, 5, "both members answering")
    lab.stop_backend("m1")
    wait_until(lambda: engine.stats()["pools"]["/Common/web"][f"{MEMBERS['m1']}:{BACKEND_PORT}"]["health"] == "down",
               5, "m1 down by its monitor")
    wait_until(lambda: answers(lab, ask_tcp, 6) == {"m2": 6}, 2, "m2 alone answering (the table written again)")
    lab.start_backend("m1")
    wait_until(lambda: answers(lab, ask_tcp, 4) == {"m1": 2, "m2": 2}, 5, "m1 back")


def test_drain_keeps_open_connections_and_sends_new_ones_elsewhere(lab: KernelLab, engine: NftablesEngine) -> None:

    lab.on_device(engine.apply([tcp(pool(weights=(1, 0)))]))  # everything to m1
    connection = lab.client.run(socket.create_connection, (VIP, 80), 2.0)
    lines = connection.makefile("rb")
    try:
        connection.sendall(b"one\n")
        assert lines.readline().split()[0] == b"m1"
        lab.on_device(engine.apply([tcp(pool(states=("drain", "enabled")))]))
        assert answers(lab, ask_tcp, 4) == {"m2": 4}
        connection.sendall(b"two\n")  # the open connection still reaches m1
        assert lines.readline().split()[0] == b"m1"
    finally:
        lines.close()
        connection.close()


def test_snat_automap_gives_members_the_traffic_groups_address(lab: KernelLab, engine: NftablesEngine) -> None:
    lab.on_device(engine.apply([tcp(pool(), snat="automap", snat_address="10.72.0.1"),
                                udp(pool("dns"), snat="automap", snat_address="10.72.0.1")]))
    assert {lab.client.run(ask_tcp)[1] for _ in range(4)} == {"10.72.0.1"}
    assert {lab.client.run(ask_udp)[1] for _ in range(4)} == {"10.72.0.1"}


def test_what_the_kernel_does_not_serve_is_reported_and_the_rest_served(lab: KernelLab,
                                                                        engine: NftablesEngine) -> None:
    http = ServedVirtual("Common", "www", VIP, 8080, pool(), protocol="http")
    lab.on_device(engine.apply([tcp(pool()), http]))
    assert engine.errors == {"/Common/www": NOT_LAYER4}
    assert engine.stats()["virtuals"]["/Common/www"]["listening"] is False
    assert lab.client.run(ask_tcp)[0] in MEMBERS


def test_a_ruleset_changed_under_load_fails_no_request(lab: KernelLab, engine: NftablesEngine) -> None:
    lab.on_device(engine.apply([tcp(pool())]))
    failures: list[str] = []
    done = threading.Event()
    asked = [0]

    def load() -> None:
        while not done.is_set():
            try:
                ask_tcp(timeout=1.0)
            except OSError as error:
                failures.append(repr(error))
            asked[0] += 1

    loader = threading.Thread(target=lab.client.run, args=(load,))
    loader.start()
    try:
        for n in range(60):  # weights (member ranges: interval maps), methods and a second virtual server change
            others = [udp(pool("dns"))] if n % 2 else []
            lab.on_device(engine.apply([tcp(pool(weights=(2 + n % 3, 1), lb_method=("round-robin", "random",
                                                                                   "source-hash")[n % 3])),
                                        *others]))
    finally:
        done.set()
        loader.join()
    assert asked[0] > 60 and failures == []


def test_a_pair_serves_tcp_and_udp_in_the_kernel_and_the_standby_takes_over(tmp_path) -> None:
    """Two devices `tandem serve --engine nftables`, the members on a host of their own (d): tcp and udp
    virtual servers made through the API answer from both members through the active device, with the traffic
    group's address as their source (`snat` automap); its kill -9 moves them to the standby."""

    floating = "198.18.0.50"
    lab = Lab(tmp_path, engine="nftables", others=("d",))
    members = [{"address": ADDR["d"], "port": port} for port in (9001, 9002)]
    with formed(lab, addresses=(floating,)) as lab:
        backends = [subprocess.Popen(["ip", "netns", "exec", lab.ns["d"].name, sys.executable, "-c", BACKEND, name,
                                      ADDR["d"], str(port)], start_new_session=True)
                    for name, port in (("m1", 9001), ("m2", 9002))]
        try:
            a = lab.a.api
            check(a.post("/api/pools", json={"name": "members", "members": members}), 201)
            for protocol, port in (("tcp", 80), ("udp", 53)):
                check(a.post("/api/virtuals", json={"name": protocol, "address": "198.18.0.100", "port": port,
                                                     "protocol": protocol, "pool": "members", "snat": "automap",
                                                     "traffic_group": TRAFFIC_GROUP}), 201)
            lab.wait_in_sync()
            wait_until(lambda: set(a.get("/api/dataplane").json()["errors"].values()) == {NOT_FORWARDING}, 10,
                       "a saying that it does not forward")
            for host in ("a", "b"):
                sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=lab.ns[host].name)
            client = lab.ns["c"]

            def through(ask) -> set[tuple[str, str]]:
                return {client.run(ask, "198.18.0.100") for _ in range(4)}

            wait_until(lambda: through(_tcp) == {("m1", floating), ("m2", floating)}, 15, "tcp through a")
            assert through(_udp) == {("m1", floating), ("m2", floating)}
            wait_until(lambda: a.get("/api/dataplane").json()["errors"] == {}, 5, "a forwarding, without errors")
            served = a.get("/api/dataplane").json()
            assert served["engine"]["name"] == "nftables"
            assert served["virtuals"]["/Common/tcp"]["connections_total"] >= 4
            lab.fail("a")
            wait_until(lambda: lab.b.traffic_group()["state"] == "active", 10, "b active")
            wait_until(lambda: through(_tcp) == {("m1", floating), ("m2", floating)}, 10, "tcp through b")
            assert through(_udp) == {("m1", floating), ("m2", floating)}
        finally:
            for backend in backends:
                kill_group(backend)


def _tcp(address: str) -> tuple[str, str]:
    try:
        return ask_tcp(address, 80, timeout=0.5)
    except (OSError, ValueError):
        return ("none", "")


def _udp(address: str) -> tuple[str, str]:
    try:
        return ask_udp(address, 53, timeout=0.5)
    except (OSError, ValueError):
        return ("none", "")


@pytest.mark.skipif(shutil.which("conntrackd") is None, reason="conntrackd is not installed")
@pytest.mark.parametrize("mirroring", [True, False])
def test_a_long_lived_connection_survives_the_active_devices_kill_only_with_mirroring(tmp_path, mirroring) -> None:
    """A TCP connection through the kernel engine keeps exchanging lines across kill -9 of the active device
    when its traffic group mirrors connections (conntrackd); without mirroring the standby does not know it and
    it is reset. (The devices pick up no connection they do not know: nf_conntrack_tcp_loose=0, as a pair that
    mirrors should run.)"""
    floating = "198.18.0.50"
    lab = Lab(tmp_path, engine="nftables", others=("d",))
    with formed(lab, addresses=(floating,)) as lab:
        backend = subprocess.Popen(["ip", "netns", "exec", lab.ns["d"].name, sys.executable, "-c", BACKEND, "m1",
                                    ADDR["d"], "9001"], start_new_session=True)
        try:
            a = lab.a.api
            for host in ("a", "b"):
                sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=lab.ns[host].name)
                sh("sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_loose=0", ns=lab.ns[host].name)
            check(a.patch(f"/api/traffic-groups/{TRAFFIC_GROUP}", json={"mirroring": mirroring}), 200)
            check(a.post("/api/pools", json={"name": "members", "members": [{"address": ADDR["d"], "port": 9001}]}),
                  201)
            check(a.post("/api/virtuals", json={"name": "tcp", "address": "198.18.0.100", "port": 80,
                                                 "pool": "members", "snat": "automap",
                                                 "traffic_group": TRAFFIC_GROUP}), 201)
            lab.wait_in_sync()
            wait_until(lambda: lab.ns["c"].run(_tcp, "198.18.0.100")[0] == "m1", 15, "tcp through a")
            if mirroring:
                wait_until(lambda: all(_mirror(host)["running"] for host in (lab.a, lab.b)), 15, "conntrackd on both")
            connection = lab.ns["c"].run(socket.create_connection, ("198.18.0.100", 80), 2.0)
            connection.settimeout(2.0)
            lines = connection.makefile("rb")
            try:
                connection.sendall(b"before\n")
                assert lines.readline().split()[0] == b"m1"
                if mirroring:
                    wait_until(lambda: _mirror(lab.b)["external"] >= 1, 5, "the connection known to b")
                lab.fail("a")
                wait_until(lambda: lab.b.traffic_group()["state"] == "active", 10, "b active")
                try:
                    answers = []
                    for _ in range(3):
                        connection.sendall(b"after\n")
                        answers.append(lines.readline().split()[0])
                    survived = answers == [b"m1"] * 3
                except OSError:
                    survived = False
                assert survived is mirroring
            finally:
                lines.close()
                connection.close()
        finally:
            kill_group(backend)


def _mirror(host) -> dict:
    [group] = host.api.get("/api/failover/status").json()["traffic_groups"]
    return group["mirroring"] or {"running": False, "external": 0}
