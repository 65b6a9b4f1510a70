"""A floating address the address provider cannot add (10.9.9.9 with the `loopback` provider, which serves
127.0.0.0/8 only): said once in the log, shown in the failover status, in `/api/dataplane` and in the virtual
server's stats (API and `tandem virtual stats`) on the active device."""

import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from cluster_helpers import Cluster, Node, check

from waiting import wait_until

TG = "tg-faults"
BAD = "10.9.9.9"
WARNING = f"tandem.failover WARNING address {BAD}:"


@pytest.fixture(scope="module")
def node(module_cluster_factory) -> Iterator[Node]:
    """dev-1 alone in a sync-failover group, active for a traffic group whose virtual server is on 10.9.9.9."""
    cluster: Cluster = module_cluster_factory()
    (node,) = cluster.start("dev-1")
    check(node.api.post("/api/device-groups", json={"name": "dg", "type": "sync-failover", "members": ["dev-1"],
                                                    "partitions": ["Common"]}), 201)
    check(node.api.post("/api/traffic-groups", json={"name": TG, "device_group": "dg"}), 201)
    check(node.api.post("/api/virtuals", json={"name": "bad", "address": BAD, "port": random.randint(20000, 60000),
                                               "traffic_group": TG}), 201)
    wait_until(lambda: BAD in group(node)["address_errors"], 15, f"dev-1 active and failing to add {BAD}",
               detail=lambda: node.api.get("/api/failover/status").json())
    yield node


def group(node: Node) -> dict:
    status = check(node.api.get("/api/failover/status"), 200).json()
    return next(g for g in status["traffic_groups"] if g["name"] == TG)


def warnings(node: Node) -> int:
    return node.device.log_path.read_text(errors="replace").count(WARNING)


def test_the_address_error_is_logged_once_not_at_every_retry(node: Node) -> None:
    before = warnings(node)
    time.sleep(3)  # retried many times meanwhile (from every 0.05 s, backing off)
    assert before == warnings(node) == 1, node.device.log_tail()


def test_the_failover_status_and_the_data_plane_show_why(node: Node) -> None:
    shown = group(node)
    assert shown["state"] == "active" and shown["active_device"] == "dev-1"
    assert "not a loopback address" in shown["address_errors"][BAD]
    dataplane = check(node.api.get("/api/dataplane"), 200).json()
    assert BAD not in dataplane["addresses"] and "not a loopback address" in dataplane["address_errors"][BAD]
    stats = check(node.api.get("/api/virtuals/Common/bad/stats"), 200).json()
    assert stats["error"].startswith(f"its address {BAD} cannot be added to this device: ")


def test_virtual_stats_on_the_active_device_names_the_address_error(node: Node) -> None:
    device = node.device
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANDEM_")} | {
        "TANDEM_PASSWORD": device.admin_password}
    result = subprocess.run(
        [sys.executable, "-m", "tandem", "--url", device.url, "--fingerprint", device.fingerprint, "--output", "json",
         "virtual", "stats", "bad"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"its address {BAD} cannot be added to this device" in result.stdout
    assert "ask the active device" not in result.stdout + result.stderr
