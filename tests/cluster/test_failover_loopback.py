"""Failover on loopback: real devices, real heartbeats, a client through the virtual server."""

import random
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cluster_helpers import Cluster, check
from prometheus_client.parser import text_string_to_metric_families

from backends import Backend, ask
from tandem.sdk import Failover
from waiting import wait_until

TIMEOUT = 1.0
TG = "traffic-group-1"






@pytest.fixture(scope="module")
def setup(module_cluster_factory) -> Iterator[tuple[Cluster, tuple[str, int]]]:
    cluster = module_cluster_factory()
    cluster.start("dev-1", "dev-2")
    cluster.form(heartbeat_interval=0.2, heartbeat_timeout=TIMEOUT)
    backend = Backend("backend")
    vip = (f"127.{random.randint(100, 200)}.{random.randint(0, 255)}.1", 18000 + random.randint(0, 999))
    api = cluster["dev-1"].api
    check(api.post("/api/traffic-groups", json={"name": TG, "device_group": "dg", "ha_order": ["dev-1", "dev-2"]}),
          201)
    check(api.post("/api/pools", json={"name": "web", "members": [{"address": "127.0.0.1", "port": backend.port}]}),
          201)
    check(api.post("/api/virtuals", json={"name": "www", "address": vip[0], "port": vip[1], "pool": "web",
                                          "traffic_group": TG}), 201)
    wait_until(lambda: active_of(cluster) == "dev-1" and ask(*vip) == "backend", 15, "dev-1 active and serving",
               detail=lambda: failover(cluster))
    yield cluster, vip
    backend.shutdown()


def failover(cluster: Cluster) -> dict:
    out = {}
    for node in cluster:
        try:
            out[node.name] = node.api.get("/api/failover/status").json()
        except Exception as error:  # a killed device answers nothing: that is part of the picture
            out[node.name] = repr(error)
    return out


def state(node, tg: str = TG) -> str | None:
    """The device's state for a traffic group (None until it knows the group)."""
    status = node.api.get("/api/failover/status").json()
    return next((g["state"] for g in status["traffic_groups"] if g["name"] == tg), None)


def heard_active(node) -> str | None:
    """The device `node` hears is active for the traffic group."""
    status = node.api.get("/api/failover/status").json()
    return next((g["active_device"] for g in status["traffic_groups"] if g["name"] == TG), None)


def active_of(cluster: Cluster) -> str | None:
    actives = [n.name for n in cluster if n.device.process is not None and state(n) == "active"]
    return actives[0] if len(actives) == 1 else None


def listening(node) -> bool:
    virtuals = node.api.get("/api/dataplane").json()["virtuals"]
    return any(v["listening"] for v in virtuals.values())


def test_exactly_one_device_serves_and_the_standby_does_not_listen(setup):
    cluster, _ = setup
    assert listening(cluster["dev-1"]) and not listening(cluster["dev-2"])

    def seen_from_dev_2() -> dict:
        return cluster["dev-2"].api.get("/api/failover/status").json()

    wait_until(lambda: seen_from_dev_2()["traffic_groups"][0]["active_device"] == "dev-1", 3,
               "dev-2 to hear that dev-1 is active")
    status = seen_from_dev_2()
    assert status["traffic_groups"][0]["state"] == "standby"
    assert status["heartbeat"]["received"] > 0 and status["heartbeat"]["forged"] == 0
    stats = cluster["dev-1"].api.get("/api/virtuals/Common/www/stats").json()
    assert stats["connections_total"] >= 1


def test_metrics_show_sync_heartbeats_traffic_groups_the_data_plane_and_request_times(setup):
    cluster, vip = setup
    one = cluster["dev-1"]
    check(one.api.post("/api/users", json={"name": "scraper", "role": "auditor", "password": "scraper-pass-1"}), 201)
    for _ in range(3):
        assert ask(*vip) == "backend"
    assert httpx.get(f"{one.device.url}/metrics", verify=False).status_code == 401

    def scrape() -> dict[tuple[str, tuple], float]:
        answer = httpx.get(f"{one.device.url}/metrics", verify=False, auth=("scraper", "scraper-pass-1"))
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain"), answer.text
        return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
                for family in text_string_to_metric_families(answer.text) for sample in family.samples}

    wait_until(lambda: scrape()[("tandem_virtual_connections_total", (("virtual", "/Common/www"),))] >= 3, 5,
               "the connections counted")
    seen = scrape()
    assert seen[("tandem_sync_in_sync", (("group", "dg"), ("member", "dev-2")))] == 1.0
    assert seen[("tandem_traffic_group_active", (("traffic_group", TG),))] == 1.0
    assert seen[("tandem_dataplane_up", ())] == 1.0
    [(path_key, received)] = [(k, v) for k, v in seen.items() if k[0] == "tandem_heartbeat_path_received_total"]
    assert dict(path_key[1])["peer"] == "dev-2" and dict(path_key[1])["path"] == "0" and received > 0
    assert seen[("tandem_heartbeats_total", (("kind", "forged"),))] >= 0
    assert seen[("tandem_failover_transitions_total", (("state", "active"), ("traffic_group", TG)))] >= 1
    members = [k for k in seen if k[0] == "tandem_member_up"]
    assert members and all(seen[k] == 1.0 for k in members)
    logins = [v for k, v in seen.items() if k[0] == "tandem_api_request_seconds_count"
              and dict(k[1]).get("route") == "/api/users" and dict(k[1]).get("status") == "201"]
    assert logins == [1.0], [k for k in seen if k[0] == "tandem_api_request_seconds_count"]
    dashboard = (Path(__file__).resolve().parents[2] / "packaging" / "grafana-dashboard.json").read_text()
    assert set(re.findall(r"tandem_[a-z_]+", dashboard)) <= {name for name, _ in seen}  # it shows what there is
    check(one.api.delete("/api/users/scraper"), 204)


def test_two_traffic_groups_can_be_active_on_different_devices(setup):
    cluster, vip = setup
    one, two = cluster["dev-1"], cluster["dev-2"]
    other_vip = (vip[0], vip[1] + 1)
    check(one.api.post("/api/traffic-groups", json={"name": "tg-2", "device_group": "dg",
                                                    "ha_order": ["dev-2", "dev-1"]}), 201)
    wait_until(lambda: state(two, "tg-2") == "active", 5, "dev-2 active for tg-2", detail=lambda: failover(cluster))
    check(one.api.post("/api/virtuals", json={"name": "www-2", "address": other_vip[0], "port": other_vip[1],
                                              "pool": "web", "traffic_group": "tg-2"}), 201)
    wait_until(lambda: ask(*other_vip) == "backend", 5, "the tg-2 virtual server to answer")
    assert state(one, TG) == "active" and state(one, "tg-2") == "standby"
    assert "/Common/www-2" in two.api.get("/api/dataplane").json()["virtuals"]
    assert "/Common/www-2" not in one.api.get("/api/dataplane").json()["virtuals"]
    check(one.api.delete("/api/virtuals/Common/www-2"), 204)
    check(one.api.delete("/api/traffic-groups/tg-2"), 204)


def test_forged_and_malformed_heartbeats_are_dropped_and_counted(setup):
    cluster, _ = setup
    node = cluster["dev-2"]
    before = node.api.get("/api/failover/status").json()["heartbeat"]["forged"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for payload in (b"x" * 40, b"\0" * 32 + b'{"device": "dev-1"}', random.randbytes(300)):
            s.sendto(payload, ("127.0.0.1", node.peer_port))
    wait_until(lambda: node.api.get("/api/failover/status").json()["heartbeat"]["forged"] >= before + 3, 5,
               "forged heartbeats counted")
    assert state(node) == "standby" and state(cluster["dev-1"]) == "active"


def test_force_standby_offline_online_and_failback(setup):
    cluster, vip = setup
    one, two = cluster["dev-1"], cluster["dev-2"]
    refused = two.api.post(f"/api/failover/traffic-groups/{TG}/force-standby")
    assert refused.status_code == 409  # dev-2 is not active
    check(one.api.post(f"/api/failover/traffic-groups/{TG}/force-standby"), 200)
    wait_until(lambda: active_of(cluster) == "dev-2" and listening(two) and not listening(one), 5,
               "dev-2 to take over after force standby", detail=lambda: failover(cluster))
    wait_until(lambda: ask(*vip) == "backend", 3, "the virtual server to answer from dev-2")
    time.sleep(2 * TIMEOUT)
    assert active_of(cluster) == "dev-2", "without auto-failback the traffic group stays where it went"
    check(one.api.patch(f"/api/traffic-groups/{TG}", json={"auto_failback": True}), 200)
    check(one.api.post("/api/failover/online"), 200)  # clears the forced standby
    wait_until(lambda: active_of(cluster) == "dev-1", 5, "auto-failback to dev-1", detail=lambda: failover(cluster))
    check(one.api.post("/api/failover/offline"), 200)
    wait_until(lambda: active_of(cluster) == "dev-2", 5, "dev-2 active while dev-1 is offline")
    assert state(one) == "offline"
    check(one.api.post("/api/failover/online"), 200)
    wait_until(lambda: active_of(cluster) == "dev-1", 5, "dev-1 back (auto-failback) once online")
    check(one.api.patch(f"/api/traffic-groups/{TG}", json={"auto_failback": False}), 200)
    events = one.api.get("/api/failover/events", params={"traffic_group": TG}).json()["records"]
    reasons = [e["reason"] for e in events]
    assert "forced to standby" in reasons and "device is offline" in reasons
    assert any(r.startswith("auto-failback") for r in reasons)


def test_failback_waits_for_its_delay_and_the_event_stream_shows_each_transition(setup):
    cluster, _ = setup
    one = cluster["dev-1"]
    assert httpx.get(f"{one.device.url}/api/failover/events", params={"watch": "true"}, verify=False,
                     timeout=5).status_code == 401
    refused = one.api.patch(f"/api/traffic-groups/{TG}", json={"quorum": True})  # two devices: no majority
    assert refused.status_code == 422 and refused.json()["error"]["target"] == "quorum", refused.text
    refused = one.api.patch(f"/api/traffic-groups/{TG}", json={"trackers": [{"type": "gateway", "target": "gw.lan"}]})
    assert refused.status_code == 422 and "IPv4 address" in refused.text, refused.text
    assert one.api.get(f"/api/traffic-groups/{TG}").json()["trackers"] == []  # nothing changed
    streamed: list[dict] = []
    before = max(e["id"] for e in one.api.get("/api/failover/events").json()["records"])

    def follow() -> None:  # the last 10 and those after, whenever the stream opens: those after `before` count
        for record in Failover(one.device.client()).watch_events(traffic_group=TG, last=10):
            if record["id"] > before:
                streamed.append(record)
            if record["reason"].startswith("auto-failback") and record["id"] > before:
                return

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    check(one.api.patch(f"/api/traffic-groups/{TG}", json={"auto_failback": True, "failback_delay": 1.5}), 200)
    try:
        check(one.api.post("/api/failover/offline"), 200)
        wait_until(lambda: active_of(cluster) == "dev-2" and heard_active(one) == "dev-2", 5,
                   "dev-2 active while dev-1 is offline, and dev-1 hearing it")
        check(one.api.post("/api/failover/online"), 200)
        online = time.monotonic()
        wait_until(lambda: active_of(cluster) == "dev-1", 6, "dev-1 back once its failback delay is over",
                   detail=lambda: failover(cluster))
        assert time.monotonic() - online > 1.3, "dev-1 took the group back before its failback delay"
        reader.join(5)
        moves = [(r["from_state"], r["to_state"]) for r in streamed]
        assert moves[-3:] == [("active", "offline"), ("offline", "standby"), ("standby", "active")], streamed
    finally:
        check(one.api.patch(f"/api/traffic-groups/{TG}", json={"auto_failback": False, "failback_delay": 0}), 200)


def test_kill_9_of_the_active_device_moves_the_virtual_server_within_the_timeout(setup):
    cluster, vip = setup
    wait_until(lambda: active_of(cluster) == "dev-1" and not listening(cluster["dev-2"]), 5,
               "dev-1 active and dev-2 not listening", detail=lambda: failover(cluster))
    cluster["dev-1"].kill()
    failed_at = time.monotonic()
    # dev-1's data plane may answer for the moment it takes to stop after its daemon's death: the takeover is
    # done when dev-2 is active and the virtual server answers
    while not (state(cluster["dev-2"]) == "active" and ask(*vip) == "backend"):
        assert time.monotonic() - failed_at < TIMEOUT + 2.0, f"no takeover: {failover(cluster)}"
        time.sleep(0.01)
    takeover = time.monotonic() - failed_at
    assert takeover < TIMEOUT + 1.0, f"takeover took {takeover:.2f} s"
    events = cluster["dev-2"].api.get("/api/failover/events", params={"traffic_group": TG}).json()["records"]
    assert events[-1]["to_state"] == "active" and "no active device" in events[-1]["reason"]
    cluster["dev-1"].start()  # it comes back as standby: no auto-failback, dev-2 keeps the traffic group
    wait_until(lambda: state(cluster["dev-1"]) == "standby" and active_of(cluster) == "dev-2", 10,
               "dev-1 back as standby", detail=lambda: failover(cluster))
