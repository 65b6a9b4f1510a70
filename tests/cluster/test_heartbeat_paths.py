"""Several heartbeat paths, on loopback: two devices, each with a dedicated heartbeat address beside its peer
address; nftables drops one path's heartbeats, then both (root and nft needed: CI runs as root)."""

import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from cluster_helpers import Cluster, check

from devices import free_port
from waiting import wait_until

TG = "traffic-group-1"
TABLE = f"tandem_test_paths_{os.getpid()}"

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("nft") is None,
                                reason="cutting heartbeat paths takes nftables, as root")


def nft(script: str) -> None:
    subprocess.run(["nft", "-f", "-"], input=script.encode(), check=True, capture_output=True)


@pytest.fixture(scope="module")
def pair(module_cluster_factory) -> Iterator[tuple[Cluster, dict[str, str]]]:
    base = f"127.{random.randint(100, 200)}.{random.randint(0, 255)}"
    dedicated = {name: f"{base}.{n}" for n, name in enumerate(("dev-1", "dev-2"), start=1)}
    cluster = module_cluster_factory()
    for name, address in dedicated.items():
        cluster.start(name, extra_args=["--heartbeat-address", f"{address}:{free_port()}"])
    cluster.form(heartbeat_interval=0.1)
    check(cluster["dev-1"].api.post("/api/traffic-groups", json={
        "name": TG, "device_group": "dg", "ha_order": ["dev-1", "dev-2"], "auto_failback": True}), 201)
    wait_until(lambda: states(cluster) == {"dev-1": "active", "dev-2": "standby"}, 15, "dev-1 active",
               detail=lambda: states(cluster))
    nft(f"add table inet {TABLE}\nadd chain inet {TABLE} input {{ type filter hook input priority 0; }}\n")
    yield cluster, dedicated
    subprocess.run(["nft", "delete", "table", "inet", TABLE], capture_output=True)


def status(cluster: Cluster, name: str) -> dict:
    return cluster[name].api.get("/api/failover/status").json()


def states(cluster: Cluster) -> dict[str, str | None]:
    return {node.name: next((g["state"] for g in status(cluster, node.name)["traffic_groups"] if g["name"] == TG),
                            None) for node in cluster}


def paths_of(cluster: Cluster, name: str, peer: str) -> list[dict]:
    return status(cluster, name)["heartbeat"]["peers"][peer]["paths"]


def events(cluster: Cluster, name: str) -> list[dict]:
    return check(cluster[name].api.get("/api/failover/events", params={"limit": 1000}), 200).json()["records"]


def test_a_path_cut_is_an_event_and_no_takeover_every_path_cut_is_a_takeover(pair):
    cluster, dedicated = pair
    peer_ports = [node.peer_port for node in cluster]
    # both paths up, each way, with the addresses each device advertised
    for name, peer in (("dev-1", "dev-2"), ("dev-2", "dev-1")):
        wait_until(lambda name=name, peer=peer: [p["up"] for p in paths_of(cluster, name, peer)] == [True, True], 10,
                   f"{name} hears {peer} on two paths", detail=lambda: paths_of(cluster, "dev-2", "dev-1"))
    assert paths_of(cluster, "dev-2", "dev-1")[1]["address"].startswith(dedicated["dev-1"] + ":")
    assert paths_of(cluster, "dev-2", "dev-1")[0]["address"] == f"127.0.0.1:{peer_ports[0]}"
    seen = {name: max((e["id"] for e in events(cluster, name)), default=0) for name in cluster.names}

    # the dedicated path cut both ways: a path-down event on each device, the roles stay
    nft(f"add rule inet {TABLE} input ip daddr {{ {', '.join(dedicated.values())} }} meta l4proto udp drop\n")
    for name, peer in (("dev-1", "dev-2"), ("dev-2", "dev-1")):
        wait_until(lambda name=name, peer=peer: [p["up"] for p in paths_of(cluster, name, peer)] == [True, False], 10,
                   f"{name} sees path 1 from {peer} down", detail=lambda name=name, peer=peer: paths_of(
                       cluster, name, peer))
    time.sleep(1.5)  # many times the silence allowed: a takeover would have happened by now
    assert states(cluster) == {"dev-1": "active", "dev-2": "standby"}
    for name, peer in (("dev-1", "dev-2"), ("dev-2", "dev-1")):
        new = [e for e in events(cluster, name) if e["id"] > seen[name]]
        assert [(e["kind"], e["traffic_group"], e["from_state"], e["to_state"]) for e in new] == [
            ("path", "", "up", "down")], new
        assert new[0]["reason"].startswith(f"{peer}'s heartbeats on path 1 ({dedicated[peer]}:")
        assert new[0]["reason"].endswith(": 1 of 2 paths up")
    device = cluster["dev-2"].device
    cli_line = subprocess.run(
        [sys.executable, "-m", "tandem", "--url", device.url, "--fingerprint", device.fingerprint, "failover",
         "status"], env=dict(os.environ, TANDEM_PASSWORD=device.admin_password), capture_output=True,
        check=True).stdout.decode()
    assert f"heartbeat paths: dev-1 127.0.0.1:{peer_ports[0]} up, {dedicated['dev-1']}:" in cli_line

    # the peer addresses' heartbeats cut too: dev-2 hears nothing of dev-1 and takes the group
    nft(f"add rule inet {TABLE} input udp dport {{ {', '.join(map(str, peer_ports))} }} drop\n")
    wait_until(lambda: states(cluster)["dev-2"] == "active", 5, "dev-2 takes over", detail=lambda: states(cluster))

    # healed: every path back, one active device (dev-1, first in HA order, auto failback)
    nft(f"flush chain inet {TABLE} input\n")
    wait_until(lambda: states(cluster) == {"dev-1": "active", "dev-2": "standby"}, 10, "dev-1 active again",
               detail=lambda: states(cluster))
    wait_until(lambda: [p["up"] for p in paths_of(cluster, "dev-2", "dev-1")] == [True, True], 10, "paths back")
    back = [e for e in events(cluster, "dev-2") if e["kind"] == "path" and e["to_state"] == "up"]
    assert {e["reason"].split(" (")[0] for e in back} == {f"dev-1's heartbeats on path {n}" for n in (0, 1)}
