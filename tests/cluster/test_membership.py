"""The membership view (LXD style) on real devices: members and their status from real heartbeats and
peer links, evacuate and restore moving a traffic group, the cluster's name, errors and permissions.

dev-1 and dev-2 form sync-failover group `dg` with a traffic group and a virtual server; dev-3 is in
the trust domain but in no device group (it judges the others by the peer channel only).
"""

import random
import re
import time
from collections.abc import Iterator

import httpx
import pytest
from cluster_helpers import Cluster, Node, TandemAuth, api_session, check, error_of

from backends import Backend, ask
from waiting import wait_until

TIMEOUT = 1.0
TG = "traffic-group-1"
FIELDS = {"server_name", "url", "database", "status", "message", "roles"}
OPERATIONAL = "Fully operational"


@pytest.fixture(scope="module")
def setup(module_cluster_factory) -> Iterator[tuple[Cluster, tuple[str, int]]]:
    cluster = module_cluster_factory()
    one, two, three = cluster.start("dev-1", "dev-2", "dev-3")
    cluster.trust(one, [two, three])
    cluster.wait_trusted(cluster.nodes)
    cluster.create_group(one, ["dev-1", "dev-2"], heartbeat_interval=0.2, heartbeat_timeout=TIMEOUT)
    cluster.wait_in_sync([one, two])
    backend = Backend("backend")
    vip = (f"127.{random.randint(100, 200)}.{random.randint(0, 255)}.1", 18000 + random.randint(0, 999))
    check(one.api.post("/api/traffic-groups", json={"name": TG, "device_group": "dg", "ha_order": ["dev-1", "dev-2"]}),
          201)
    check(one.api.post("/api/pools", json={"name": "web", "members": [{"address": "127.0.0.1", "port": backend.port}]}),
          201)
    check(one.api.post("/api/virtuals", json={"name": "www", "address": vip[0], "port": vip[1], "pool": "web",
                                              "traffic_group": TG}), 201)
    wait_until(lambda: active_of(cluster) == "dev-1" and ask(*vip) == "backend", 15, "dev-1 active and serving",
               detail=lambda: views(cluster))
    yield cluster, vip
    backend.shutdown()


def members(node: Node) -> dict[str, dict]:
    return {m["server_name"]: m for m in check(node.api.get("/api/cluster/members"), 200).json()["records"]}


def member(node: Node, name: str) -> dict:
    return check(node.api.get(f"/api/cluster/members/{name}"), 200).json()


def views(cluster: Cluster) -> dict:
    """Every running device's member list and failover status (for failure messages)."""
    out = {}
    for node in cluster:
        try:
            out[node.name] = {"members": members(node), "failover": node.api.get("/api/failover/status").json()}
        except Exception as error:  # a killed device answers nothing: that is part of the picture
            out[node.name] = repr(error)
    return out


def state(node: Node) -> str | None:
    """The device's state for the traffic group (None when it has none)."""
    status = node.api.get("/api/failover/status").json()
    return next((g["state"] for g in status["traffic_groups"] if g["name"] == TG), None)


def active_of(cluster: Cluster) -> str | None:
    actives = [n.name for n in cluster if n.device.process is not None and state(n) == "active"]
    return actives[0] if len(actives) == 1 else None


def listening(node: Node) -> bool:
    return any(v["listening"] for v in node.api.get("/api/dataplane").json()["virtuals"].values())


def all_online(cluster: Cluster) -> bool:
    return all(m["status"] == "Online" and m["message"] == OPERATIONAL for n in cluster for m in members(n).values())


def wait_status(cluster: Cluster, name: str, status: str, timeout: float = 10) -> None:
    wait_until(lambda: all(member(n, name)["status"] == status for n in cluster), timeout,
               f"{name} {status} on every device", detail=lambda: views(cluster))


def test_every_device_lists_every_member_with_its_fields(setup):
    cluster, _ = setup
    one, two, three = cluster.nodes
    wait_until(lambda: all_online(cluster), 10, "every member Online everywhere", detail=lambda: views(cluster))
    for node in cluster:
        seen = members(node)
        assert list(seen) == ["dev-1", "dev-2", "dev-3"]
        for name, record in seen.items():
            assert set(record) == FIELDS
            assert record["url"] == cluster[name].device.url
        assert [seen[n]["database"] for n in seen] == [True, True, False]
        assert seen["dev-2"]["roles"] == ["database", "failover"] and seen["dev-3"]["roles"] == []
        assert member(node, "dev-3") == seen["dev-3"]
    # the members of the failover group hear who is active (dev-2 within a heartbeat)
    wait_until(lambda: all(members(n)["dev-1"]["roles"] == ["database", "failover", "active"] for n in (one, two)),
               3, "dev-1 active as its group sees it", detail=lambda: views(cluster))
    assert members(three)["dev-1"]["roles"] == ["database", "failover"]


def test_members_is_a_collection_with_paging_fields_and_filters(setup):
    cluster, _ = setup
    api = cluster["dev-1"].api
    first = check(api.get("/api/cluster/members", params={"limit": 2}), 200).json()
    assert [m["server_name"] for m in first["records"]] == ["dev-1", "dev-2"] and first["next"]
    rest = check(api.get(first["next"]), 200).json()
    assert [m["server_name"] for m in rest["records"]] == ["dev-3"] and rest["next"] is None
    projected = check(api.get("/api/cluster/members", params={"fields": "database", "database": "false"}), 200)
    assert projected.json()["records"] == [{"server_name": "dev-3", "database": False}]
    assert api.get("/api/cluster/members", params={"fields": "nope"}).status_code == 400


def test_cluster_view_and_its_name(setup):
    cluster, _ = setup
    one, two, _three = cluster.nodes
    seen = {n.name: check(n.api.get("/api/cluster"), 200).json() for n in cluster}
    domain_id = check(one.api.get("/api/trust"), 200).json()["domain_id"]
    for name, view in seen.items():
        assert view["server_name"] == name and view["enabled"] is True and view["uuid"] == domain_id
        assert [item["key"] for item in view["member_config"]] == ["url", "username", "password", "fingerprint"]
        assert all(set(item) == {"entity", "name", "key", "description"} for item in view["member_config"])
    assert seen["dev-1"]["cluster_name"] == f"cluster-{domain_id[:8]}"
    renamed = check(two.api.patch("/api/cluster", json={"cluster_name": "site-a"}), 200).json()
    assert renamed == dict(seen["dev-2"], cluster_name="site-a")
    wait_until(lambda: all(n.api.get("/api/cluster").json()["cluster_name"] == "site-a" for n in cluster), 10,
               "the new name on every device")
    assert one.api.patch("/api/cluster", json={"cluster_name": "no spaces"}).status_code == 422
    assert one.api.patch("/api/cluster", json={"uuid": "mine"}).status_code == 422
    assert check(one.api.patch("/api/cluster", json={}), 200).json()["cluster_name"] == "site-a"


def test_unknown_member_no_credentials_and_read_only_users(setup):
    cluster, _ = setup
    one = cluster["dev-1"]
    missing = one.api.get("/api/cluster/members/dev-9")
    assert missing.status_code == 404 and error_of(missing)["code"] == "not_found"
    assert error_of(missing)["target"] == "dev-9"
    for action in ("evacuate", "restore"):
        assert one.api.post(f"/api/cluster/members/dev-9/{action}").status_code == 404
    with httpx.Client(base_url=one.device.url, verify=False, timeout=10) as anonymous:
        for method, path in (("GET", "/api/cluster"), ("PATCH", "/api/cluster"), ("GET", "/api/cluster/members"),
                             ("GET", "/api/cluster/members/dev-2"), ("POST", "/api/cluster/members/dev-2/evacuate"),
                             ("POST", "/api/cluster/members/dev-2/restore")):
            assert anonymous.request(method, path).status_code == 401, (method, path)
    check(one.api.post("/api/users", json={"name": "watcher", "role": "auditor", "password": "watcher-pass"}), 201)
    auth = TandemAuth(one.device.url, "watcher", "watcher-pass")
    with httpx.Client(base_url=one.device.url, verify=False, timeout=10, auth=auth) as auditor:
        assert check(auditor.get("/api/cluster/members"), 200).json()["num_records"] == 3
        for action in ("evacuate", "restore"):
            refused = auditor.post(f"/api/cluster/members/dev-2/{action}")
            assert refused.status_code == 403 and error_of(refused)["code"] == "forbidden"
        assert auditor.patch("/api/cluster", json={"cluster_name": "mine"}).status_code == 403
    assert member(one, "dev-2")["status"] == "Online"
    check(one.api.delete("/api/users/watcher"), 204)


def test_a_killed_member_turns_offline_and_back_online(setup):
    cluster, _ = setup
    one, two, three = cluster.nodes
    wait_until(lambda: all_online(cluster), 10, "every member Online everywhere", detail=lambda: views(cluster))
    two.kill()
    seen = wait_until(lambda: (m := member(one, "dev-2"))["status"] == "Offline" and m, TIMEOUT + 1.5,
                      "dev-1 to see dev-2 Offline within the heartbeat timeout", detail=lambda: views(cluster))
    silence = re.fullmatch(r"no heartbeat for (\d+\.\d) s", seen["message"])
    assert silence and float(silence[1]) >= TIMEOUT - 0.05, seen
    assert "active" not in seen["roles"] and members(one)["dev-1"]["status"] == "Online"
    # dev-3 is in no failover group: it judges dev-2 by the peer channel
    seen = wait_until(lambda: (m := member(three, "dev-2"))["status"] == "Offline" and m, 10,
                      "dev-3 to see dev-2 Offline", detail=lambda: views(cluster))
    assert seen["message"] and not seen["message"].startswith("no heartbeat"), seen
    two.start()
    wait_until(lambda: all_online(cluster), 15, "dev-2 Online again everywhere", detail=lambda: views(cluster))
    wait_until(lambda: state(two) == "standby" and active_of(cluster) == "dev-1", 10, "dev-1 still active")


def test_evacuate_moves_the_traffic_group_and_restore_makes_the_member_eligible_again(setup):
    cluster, vip = setup
    one, two, three = cluster.nodes
    wait_until(lambda: active_of(cluster) == "dev-1" and listening(one) and not listening(two), 10,
               "dev-1 active and serving", detail=lambda: views(cluster))
    # any member may evacuate any member: here dev-3, which is not even in the failover group
    answer = check(three.api.post("/api/cluster/members/dev-1/evacuate"), 200).json()
    assert answer["status"] == "Evacuated" and answer["server_name"] == "dev-1"
    assert answer["message"] == "evacuated: its traffic groups are served by others"
    wait_until(lambda: active_of(cluster) == "dev-2" and listening(two) and not listening(one), TIMEOUT + 4,
               "dev-2 to take the traffic group", detail=lambda: views(cluster))
    assert ask(*vip) == "backend" and state(one) == "offline"
    wait_status(cluster, "dev-1", "Evacuated")
    wait_until(lambda: "active" in members(one)["dev-2"]["roles"] and "active" not in members(one)["dev-1"]["roles"],
               3, "dev-1 to hear dev-2 active", detail=lambda: views(cluster))
    again = check(one.api.post("/api/cluster/members/dev-1/evacuate"), 200).json()
    assert again["status"] == "Evacuated"
    status = one.api.get("/api/failover/status").json()
    assert status["offline"] and status["evacuated"]
    events = one.api.get("/api/failover/events", params={"traffic_group": TG}).json()["records"]
    assert events[-1]["to_state"] == "offline" and events[-1]["reason"] == "device is evacuated"

    restored = check(one.api.post("/api/cluster/members/dev-1/restore"), 200).json()
    assert restored["status"] == "Online" and restored["message"] == OPERATIONAL
    wait_status(cluster, "dev-1", "Online")
    wait_until(lambda: state(one) == "standby", 5, "dev-1 standby once restored", detail=lambda: views(cluster))
    time.sleep(2 * TIMEOUT)
    assert active_of(cluster) == "dev-2", "without auto-failback the traffic group stays where it went"
    # dev-1 can be chosen again: evacuating dev-2 hands the traffic group back to it
    check(one.api.post("/api/cluster/members/dev-2/evacuate"), 200)
    wait_until(lambda: active_of(cluster) == "dev-1" and listening(one) and not listening(two), TIMEOUT + 4,
               "dev-1 to take the traffic group back", detail=lambda: views(cluster))
    assert ask(*vip) == "backend"
    check(two.api.post("/api/cluster/members/dev-2/restore"), 200)
    wait_status(cluster, "dev-2", "Online")


def test_evacuating_the_last_member_able_to_serve_is_allowed_and_says_so(setup):
    cluster, vip = setup
    one, two, _three = cluster.nodes
    wait_until(lambda: active_of(cluster) == "dev-1", 10, "dev-1 active", detail=lambda: views(cluster))
    check(two.api.post("/api/failover/offline"), 200)
    try:
        wait_until(lambda: member(one, "dev-2")["message"] == "offline for failover: it takes no traffic group", 5,
                   "dev-1 to hear that dev-2 is offline", detail=lambda: views(cluster))
        assert member(one, "dev-2")["status"] == "Online"
        answer = check(one.api.post("/api/cluster/members/dev-1/evacuate"), 200).json()
        assert answer["status"] == "Evacuated"
        assert answer["message"] == "evacuated: nobody can take its traffic groups"
        wait_until(lambda: state(one) == "offline" and state(two) == "offline" and ask(*vip) is None, TIMEOUT + 4,
                   "nobody to serve", detail=lambda: views(cluster))
        check(two.api.post("/api/failover/online"), 200)
        wait_until(lambda: active_of(cluster) == "dev-2", TIMEOUT + 4, "dev-2 to take it once online",
                   detail=lambda: views(cluster))
        assert member(one, "dev-1")["message"] == "evacuated: its traffic groups are served by others"
    finally:
        check(two.api.post("/api/failover/online"), 200)
        check(one.api.post("/api/cluster/members/dev-1/restore"), 200)
    wait_until(lambda: all_online(cluster), 10, "every member Online again", detail=lambda: views(cluster))


def test_a_device_on_its_own_is_a_cluster_of_one(device):
    with api_session(device) as api:
        view = check(api.get("/api/cluster"), 200).json()
        assert view["server_name"] == "dev-1" and view["enabled"] is False
        records = check(api.get("/api/cluster/members"), 200).json()["records"]
        assert records == [{"server_name": "dev-1", "url": device.url, "database": False, "status": "Online",
                            "message": OPERATIONAL, "roles": []}]
        evacuated = check(api.post("/api/cluster/members/dev-1/evacuate"), 200).json()
        assert evacuated["status"] == "Evacuated"
        assert evacuated["message"] == "evacuated: it has no traffic group to hand over"
        assert check(api.get("/api/failover/status"), 200).json()["evacuated"] is True
        assert check(api.post("/api/cluster/members/dev-1/restore"), 200).json()["status"] == "Online"
