"""Device groups: clusters of 2, 3 and 4 devices form, converge and tear down; the group rules."""

import time

import pytest
from cluster_helpers import GROUP, Cluster, check, error_of, pool_names, read_collection

from waiting import wait_until


def write_on(node, index: int) -> None:
    """A monitor, a pool using it with a member, and a virtual server using the pool, named after `node`."""
    name = node.name
    check(node.api.post("/api/monitors", json={"name": f"mon-{name}", "type": "http", "path": f"/{name}"}), 201)
    check(node.api.post("/api/pools", json={"name": f"pool-{name}", "monitor": f"/Common/mon-{name}",
                                            "members": [{"address": f"10.0.{index}.1", "port": 80}]}), 201)
    check(node.api.post("/api/virtuals", json={"name": f"vs-{name}", "address": f"10.9.{index}.1", "port": 80,
                                               "pool": f"/Common/pool-{name}"}), 201)


@pytest.mark.parametrize("size", [2, 3, 4])
def test_a_cluster_forms_converges_and_tears_down(cluster_factory, size):
    cluster = cluster_factory()
    nodes = cluster.start(*(f"dev-{i}" for i in range(1, size + 1)))
    cluster.form()
    for node in nodes:
        group = check(node.api.get(f"/api/device-groups/{GROUP}"), 200).json()
        assert sorted(group["members"]) == cluster.names
        assert (group["type"], group["partitions"], group["auto_sync"], group["full_load_on_sync"]) == (
            "sync-failover", ["Common"], True, False)

    for index, node in enumerate(nodes):
        write_on(node, index)
    config = cluster.wait_converged()
    assert pool_names(config) == {f"pool-{n}" for n in cluster.names}
    assert {v["name"] for v in config["virtuals"].values()} == {f"vs-{n}" for n in cluster.names}
    assert config["pools"]["Common/pool-dev-1"]["members"] == [
        {"address": "10.0.0.1", "port": 80, "state": "enabled", "weight": 1, "description": "", "enabled": True}]

    check(nodes[-1].api.delete(f"/api/device-groups/{GROUP}"), 204)
    wait_until(lambda: all(read_collection(n.api, "/api/device-groups") == [] for n in nodes), 10,
               "the group gone from every device")
    for other in nodes[1:]:
        check(nodes[0].api.delete(f"/api/trust/devices/{other.name}"), 204)
    for node in nodes:
        cluster.wait_trusted([node])
    # torn down: each device keeps its configuration, and a change no longer travels
    for node in nodes:
        assert pool_names(node.config()) == pool_names(config)
    check(nodes[0].api.post("/api/pools", json={"name": "after-teardown"}), 201)
    time.sleep(1.5)  # longer than an anti-entropy round
    for node in nodes[1:]:
        assert node.api.get("/api/pools/Common/after-teardown").status_code == 404


@pytest.fixture(scope="module")
def nine(module_cluster_factory) -> Cluster:
    """Nine devices in one trust domain, no group."""
    cluster = module_cluster_factory()
    nodes = cluster.start(*(f"dev-{i}" for i in range(1, 10)))
    cluster.trust(nodes[0], nodes[1:])
    cluster.wait_trusted(nodes)
    for node in nodes:  # a group's partitions must exist on the device asked
        check(node.api.post("/api/partitions", json={"name": "Other"}), 201)
    return cluster


def group_body(name: str, members: list[str], type_: str = "sync-only", partitions: list[str] | None = None) -> dict:
    return {"name": name, "type": type_, "members": members, "partitions": partitions or ["Common"]}


def groups_of(node) -> list[dict]:
    return read_collection(node.api, "/api/device-groups")


def test_a_sync_failover_group_has_at_most_8_members(nine):
    api = nine["dev-1"].api
    names = nine.names
    response = api.post("/api/device-groups", json=group_body("big", names, "sync-failover"))
    assert response.status_code == 422, response.text
    assert error_of(response)["target"] == "members"
    assert groups_of(nine["dev-1"]) == []
    check(api.post("/api/device-groups", json=group_body("big", names[:8], "sync-failover")), 201)
    check(api.delete("/api/device-groups/big"), 204)
    check(api.post("/api/device-groups", json=group_body("big", names, "sync-only")), 201)  # sync-only: 32
    wait_until(lambda: all([g["name"] for g in groups_of(n)] == ["big"] for n in nine), 10,
               "the group on every device")
    check(api.delete("/api/device-groups/big"), 204)
    wait_until(lambda: all(groups_of(n) == [] for n in nine), 10, "the group gone from every device")


def test_every_member_must_be_trusted(nine):
    response = nine["dev-1"].api.post("/api/device-groups", json=group_body("g", ["dev-1", "ghost"]))
    assert response.status_code == 422, response.text
    assert error_of(response)["target"] == "members"
    assert groups_of(nine["dev-1"]) == []


def test_a_partition_belongs_to_one_group_and_a_device_to_one_sync_failover_group(nine):
    one, five = nine["dev-1"], nine["dev-5"]
    check(one.api.post("/api/device-groups", json=group_body("g-a", ["dev-1", "dev-2"], "sync-failover")), 201)
    wait_until(lambda: [g["name"] for g in groups_of(five)] == ["g-a"], 10, "g-a on dev-5")
    try:
        # asked of another device than the one that created g-a: the rule holds for the domain
        response = five.api.post("/api/device-groups", json=group_body("g-b", ["dev-3", "dev-4"]))
        assert response.status_code in (409, 422), response.text
        assert error_of(response)["target"] == "partitions"
        response = five.api.post("/api/device-groups",
                                 json=group_body("g-c", ["dev-2", "dev-3"], "sync-failover", ["Other"]))
        assert response.status_code in (409, 422), response.text
        assert error_of(response)["target"] == "members"
        assert [g["name"] for g in groups_of(five)] == ["g-a"]
        # a sync-only group may share a device with a sync-failover group, on another partition
        check(five.api.post("/api/device-groups", json=group_body("g-d", ["dev-2", "dev-3"], "sync-only",
                                                                  ["Other"])), 201)
        check(five.api.delete("/api/device-groups/g-d"), 204)
    finally:
        check(one.api.delete("/api/device-groups/g-a"), 204)
    wait_until(lambda: all(groups_of(n) == [] for n in nine), 10, "no group left on any device")


def test_the_type_of_a_group_cannot_change_but_other_fields_can(nine):
    one, seven = nine["dev-1"], nine["dev-7"]
    check(one.api.post("/api/device-groups", json=group_body("g-t", ["dev-6", "dev-7"])), 201)
    try:
        response = one.api.patch("/api/device-groups/g-t", json={"type": "sync-failover"})
        assert response.status_code == 422, response.text
        assert error_of(response)["target"] == "type"
        assert check(one.api.get("/api/device-groups/g-t"), 200).json()["type"] == "sync-only"
        response = one.api.patch("/api/device-groups/g-t", json={"description": "changed on dev-1"})
        assert check(response, 200).json()["description"] == "changed on dev-1"
        wait_until(lambda: seven.api.get("/api/device-groups/g-t").json()["description"] == "changed on dev-1",
                   10, "the group's change on dev-7")
    finally:
        check(one.api.delete("/api/device-groups/g-t"), 204)


def test_bad_group_bodies_are_refused(nine):
    api = nine["dev-1"].api
    for body, target in [
        (dict(group_body("g", ["dev-1"]), colour="red"), "colour"),
        (dict(group_body("g", ["dev-1"]), type="active-active"), "type"),
        (dict(group_body("g", ["dev-1"]), name="no spaces"), "name"),
    ]:
        response = api.post("/api/device-groups", json=body)
        assert response.status_code == 422, (body, response.text)
        assert error_of(response)["target"] == target, (body, response.text)
    check(api.post("/api/device-groups", json=group_body("g", ["dev-8"])), 201)
    try:
        assert api.post("/api/device-groups", json=group_body("g", ["dev-9"], partitions=["Other"])
                        ).status_code == 409
    finally:
        check(api.delete("/api/device-groups/g"), 204)
    assert api.get("/api/device-groups/nope").status_code == 404
