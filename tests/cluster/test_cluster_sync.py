"""Config sync in a 3-device group: auto-sync from any member, sync status, initial sync of a joining
device, and manual sync with auto-sync off."""

import time

import pytest
from cluster_helpers import GROUP, Cluster, check, error_of, pool_names, wait_job

from waiting import wait_until


@pytest.fixture(scope="module")
def trio(module_cluster_factory) -> Cluster:
    cluster = module_cluster_factory()
    cluster.start("dev-1", "dev-2", "dev-3")
    cluster.form()
    return cluster


def test_a_change_on_any_member_reaches_every_member(trio):
    one, two, three = trio.nodes
    check(one.api.post("/api/monitors", json={"name": "m-auto", "type": "tcp"}), 201)
    check(one.api.post("/api/pools", json={"name": "p-auto", "monitor": "/Common/m-auto",
                                           "members": [{"address": "10.1.0.1", "port": 80}]}), 201)
    check(one.api.post("/api/virtuals", json={"name": "v-auto", "address": "10.2.0.1", "port": 443,
                                              "pool": "/Common/p-auto"}), 201)
    config = trio.wait_converged()
    assert "Common/v-auto" in config["virtuals"]

    # dev-2 changes what dev-1 created
    check(two.api.patch("/api/pools/Common/p-auto", json={"lb_method": "least-connections"}), 200)
    check(two.api.post("/api/pools/Common/p-auto/members", json={"address": "10.1.0.2", "port": 80}), 201)
    check(two.api.patch("/api/pools/Common/p-auto/members/10.1.0.1:80", json={"enabled": False}), 200)
    config = trio.wait_converged()
    pool = config["pools"]["Common/p-auto"]
    assert pool["lb_method"] == "least-connections"
    assert [(m["address"], m["enabled"]) for m in pool["members"]] == [("10.1.0.1", False), ("10.1.0.2", True)]

    # dev-3 deletes: deletions travel too
    check(three.api.delete("/api/virtuals/Common/v-auto"), 204)
    check(three.api.delete("/api/pools/Common/p-auto/members/10.1.0.1:80"), 204)
    check(three.api.patch("/api/monitors/Common/m-auto", json={"interval": 2.5}), 200)
    config = trio.wait_converged()
    assert "Common/v-auto" not in config["virtuals"]
    assert [m["address"] for m in config["pools"]["Common/p-auto"]["members"]] == ["10.1.0.2"]
    assert config["monitors"]["Common/m-auto"]["interval"] == 2.5
    # a partition not in the group stays on its device
    check(one.api.post("/api/partitions", json={"name": "Local"}), 201)
    check(one.api.post("/api/pools", json={"partition": "Local", "name": "p-local"}), 201)
    check(one.api.post("/api/pools", json={"name": "p-after-local"}), 201)
    trio.wait_converged(partitions=["Common"])
    for node in (two, three):
        assert node.api.get("/api/pools/Local/p-local").status_code == 404
        assert node.api.get("/api/partitions/Local").status_code == 404
    check(one.api.delete("/api/pools/Local/p-local"), 204)
    check(one.api.delete("/api/partitions/Local"), 204)


def last_commits(node, member: str) -> dict[str, int]:
    return next(m for m in node.status()["members"] if m["name"] == member)["last_commit"]


def test_status_shows_in_sync_and_last_commit_per_origin_grows(trio):
    trio.wait_in_sync()
    status = trio["dev-1"].status()
    assert status["name"] == GROUP and status["type"] == "sync-failover"
    for member in status["members"]:
        assert member["connected"] is True and member["pending_changes"] == 0, member
    before = {(n.name, m): last_commits(n, m).get("dev-2", 0) for n in trio for m in trio.names}
    for i in range(3):
        check(trio["dev-2"].api.post("/api/pools", json={"name": f"p-seq-{i}"}), 201)
    trio.wait_converged()

    def grown() -> bool:
        return all(last_commits(n, m).get("dev-2", 0) >= before[n.name, m] + 3 for n in trio for m in trio.names)

    wait_until(grown, 10, "last_commit of dev-2 up by 3 for every member, on every device",
               detail=lambda: trio.statuses())
    # every device reports the same vector for a member once in sync
    views = {n.name: last_commits(n, "dev-3") for n in trio}
    assert len({tuple(sorted(v.items())) for v in views.values()}) == 1, views


def test_a_stopped_member_is_disconnected_and_catches_up_on_return(trio):
    one, two, three = trio.nodes
    three.stop()
    try:
        def disconnected(node) -> bool:
            status = node.status()
            member = next(m for m in status["members"] if m["name"] == "dev-3")
            return status["status"] == "Disconnected" and member["status"] == "Disconnected" \
                and member["connected"] is False

        wait_until(lambda: disconnected(one) and disconnected(two), 10, "dev-3 Disconnected on dev-1 and dev-2",
                   detail=lambda: trio.statuses([one, two]))
        check(one.api.post("/api/pools", json={"name": "p-while-down"}), 201)
    finally:
        three.start()
    config = trio.wait_converged()
    assert "Common/p-while-down" in config["pools"]


def test_auto_sync_off_keeps_changes_local_until_a_sync_from_a_device(trio):
    one, two, three = trio.nodes
    check(one.api.post("/api/pools", json={"name": "p-base", "description": "base"}), 201)
    trio.wait_converged()
    check(one.api.patch(f"/api/device-groups/{GROUP}", json={"auto_sync": False}), 200)
    wait_until(lambda: all(n.api.get(f"/api/device-groups/{GROUP}").json()["auto_sync"] is False for n in trio),
               10, "auto_sync off on every device")
    try:
        check(two.api.post("/api/pools", json={"name": "p-pending-2"}), 201)
        check(two.api.patch("/api/pools/Common/p-base", json={"description": "from dev-2"}), 200)

        def pending_on(node, member: str) -> bool:
            status = node.status()
            entry = next(m for m in status["members"] if m["name"] == member)
            return status["status"] == "Changes Pending" and entry["status"] == "Changes Pending" \
                and entry["pending_changes"] >= 2

        wait_until(lambda: all(pending_on(n, "dev-2") for n in trio), 10,
                   "dev-2 Changes Pending as every device sees it", detail=lambda: trio.statuses())
        time.sleep(1.5)  # longer than an anti-entropy round: still nothing may travel
        for node in (one, three):
            assert node.api.get("/api/pools/Common/p-pending-2").status_code == 404
            assert node.api.get("/api/pools/Common/p-base").json()["description"] == "base"

        job = wait_job(one.api, one.api.post(f"/api/device-groups/{GROUP}/sync", json={"from": "dev-2"}))
        assert job["state"] == "succeeded", job
        try:
            config = trio.wait_converged()
        except AssertionError as failure:
            raise AssertionError(f"{failure}\nafter the sync job {job}") from None
        assert "Common/p-pending-2" in config["pools"]
        assert config["pools"]["Common/p-base"]["description"] == "from dev-2"

        # dev-1's pending changes are dropped by a sync from dev-3
        check(one.api.post("/api/pools", json={"name": "p-pending-1"}), 201)
        check(one.api.patch("/api/pools/Common/p-base", json={"description": "from dev-1"}), 200)
        check(one.api.delete("/api/pools/Common/p-pending-2"), 204)
        wait_until(lambda: pending_on(one, "dev-1"), 10, "dev-1 Changes Pending", detail=lambda: trio.statuses())
        job = wait_job(two.api, two.api.post(f"/api/device-groups/{GROUP}/sync", json={"from": "dev-3"}))
        assert job["state"] == "succeeded", job
        try:
            config = trio.wait_converged()
        except AssertionError as failure:
            raise AssertionError(f"{failure}\nafter the sync job {job}") from None
        assert "Common/p-pending-1" not in config["pools"]
        assert "Common/p-pending-2" in config["pools"]
        assert config["pools"]["Common/p-base"]["description"] == "from dev-2"
        for node in trio:
            assert [m["pending_changes"] for m in node.status()["members"]] == [0, 0, 0]
    finally:
        check(one.api.patch(f"/api/device-groups/{GROUP}", json={"auto_sync": True}), 200)
    trio.wait_in_sync()
    check(three.api.post("/api/pools", json={"name": "p-auto-again"}), 201)
    assert "Common/p-auto-again" in trio.wait_converged()["pools"]


def test_sync_from_an_unknown_device_is_refused(trio):
    api = trio["dev-1"].api
    before = trio.configs()
    response = api.post(f"/api/device-groups/{GROUP}/sync", json={"from": "dev-9"})
    if response.status_code == 202:  # refused by the job it started
        job = wait_job(api, response)
        assert job["state"] == "failed" and "dev-9" in str(job["error"]), job
    else:
        assert response.status_code in (409, 422), response.text
        assert error_of(response)["target"] == "from"
    assert trio.configs() == before
    assert api.post(f"/api/device-groups/{GROUP}/sync", json={"form": "dev-1"}).status_code == 422
    assert trio["dev-1"].api.post("/api/device-groups/nope/sync", json={"from": "dev-1"}).status_code == 404


def test_a_joining_device_gets_exactly_the_group_configuration(cluster_factory):
    cluster = cluster_factory()
    one, two, three = cluster.start("dev-1", "dev-2", "dev-3")
    cluster.form([one, two])
    check(one.api.post("/api/pools", json={"name": "shared", "lb_method": "least-connections",
                                           "members": [{"address": "10.3.0.1", "port": 80}]}), 201)
    check(two.api.post("/api/monitors", json={"name": "group-mon", "type": "tcp"}), 201)
    group_config = cluster.wait_converged([one, two])
    # dev-3's own objects in Common: some unknown to the group, one with a group name and other values
    check(three.api.post("/api/monitors", json={"name": "own-mon", "type": "http"}), 201)
    check(three.api.post("/api/pools", json={"name": "own-pool", "monitor": "/Common/own-mon"}), 201)
    check(three.api.post("/api/virtuals", json={"name": "own-vs", "address": "10.4.0.1", "port": 80,
                                                "pool": "/Common/own-pool"}), 201)
    check(three.api.post("/api/pools", json={"name": "shared", "description": "dev-3's version"}), 201)
    check(three.api.post("/api/partitions", json={"name": "Mine"}), 201)
    check(three.api.post("/api/pools", json={"partition": "Mine", "name": "mine"}), 201)

    check(cluster.trust_request(two, three), 201)  # trusted through dev-2, group changed on dev-1
    cluster.wait_trusted([one, two, three])
    check(one.api.patch(f"/api/device-groups/{GROUP}", json={"members": ["dev-1", "dev-2", "dev-3"]}), 200)
    config = cluster.wait_converged(partitions=["Common"])
    assert config == group_config, "dev-3 holds more or less than the group"
    assert pool_names(config) == {"shared"}
    assert config["pools"]["Common/shared"]["lb_method"] == "least-connections"
    check(three.api.get("/api/pools/Mine/mine"), 200)  # outside the group's partitions: untouched
    check(three.api.post("/api/pools", json={"name": "from-dev-3"}), 201)
    assert "Common/from-dev-3" in cluster.wait_converged(partitions=["Common"])["pools"]


def test_objects_made_before_their_partition_joined_the_group_sync_every_later_change(cluster_factory):
    """Versions written while a partition was local carry no sequence of the group: a later change or
    delete on any member wins over them everywhere, and no conflict is reported."""
    cluster = cluster_factory()
    one, two = cluster.start("dev-1", "dev-2")
    check(one.api.post("/api/partitions", json={"name": "late"}), 201)
    for name in ("p", "q", "r"):
        check(one.api.post("/api/pools", json={"partition": "late", "name": name}), 201)
    cluster.form()
    check(one.api.patch(f"/api/device-groups/{GROUP}", json={"partitions": ["Common", "late"]}), 200)
    cluster.wait_converged()
    check(one.api.delete("/api/pools/late/p"), 204)
    check(two.api.delete("/api/pools/late/q"), 204)
    check(two.api.patch("/api/pools/late/r", json={"lb_method": "least-connections"}), 200)
    config = cluster.wait_converged(timeout=10)
    assert list(config["pools"]) == ["late/r"] and config["pools"]["late/r"]["lb_method"] == "least-connections"
    assert all(node.status()["conflicts"] == [] for node in cluster), cluster.statuses()
