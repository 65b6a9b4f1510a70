"""The peer protocol's version, announced by both ends of the peer channel: a device of the release before
(protocol 1, whose domain states have no users) syncs with this one, which sends it the domain without its users;
one that shares no protocol is refused, and both say why in the group's status. (The other releases are
pretended with the test hook TANDEM_TEST_PEER_PROTOCOL.)"""

from cluster_helpers import check

from waiting import wait_until

NO_COMMON = "no common peer protocol: {them} speaks {theirs}, {me} {mine}; upgrade the older"


def member(node, name: str) -> dict:
    status = node.api.get("/api/device-groups/dg/status").json()
    return next(m for m in status["members"] if m["name"] == name)


def test_the_release_before_syncs_without_the_users_and_one_with_no_common_protocol_is_refused(cluster_factory):
    cluster = cluster_factory()
    one, two = cluster.start("dev-1", "dev-2")
    two.device.env = {"TANDEM_TEST_HOOKS": "1", "TANDEM_TEST_PEER_PROTOCOL": "1-1"}  # the release before
    two.device.restart()
    cluster.form()
    check(one.api.post("/api/pools", json={"name": "web"}), 201)
    check(one.api.post("/api/users", json={"name": "only-new", "role": "auditor", "password": "only-new-pass"}), 201)
    cluster.wait_converged()
    assert two.api.get("/api/users/only-new").status_code == 404  # protocol 1 knows no domain users
    check(one.api.post("/api/traffic-groups", json={"name": "tg", "device_group": "dg"}), 201)
    refused = one.api.patch("/api/traffic-groups/tg", json={"trackers": [{"type": "interface", "target": "eth1"}]})
    assert refused.status_code == 409 and "dev-2 runs a release that knows no interface trackers" in refused.text
    assert one.api.get("/api/traffic-groups/tg").json()["trackers"] == []

    two.device.env["TANDEM_TEST_PEER_PROTOCOL"] = "3-4"  # a release that dropped this one's protocols
    two.device.restart()
    wait_until(lambda: member(one, "dev-2")["message"] == NO_COMMON.format(
        them="dev-2", theirs="3-4", me="dev-1", mine="1-2"), 10, "dev-1 saying why it cannot sync with dev-2",
        detail=lambda: member(one, "dev-2"))
    wait_until(lambda: member(two, "dev-1")["message"] == NO_COMMON.format(
        them="dev-1", theirs="1-2", me="dev-2", mine="3-4"), 10, "dev-2 saying why from its side",
        detail=lambda: member(two, "dev-1"))
    assert not member(one, "dev-2")["connected"] and member(one, "dev-2")["status"] != "In Sync"
    check(one.api.post("/api/pools", json={"name": "after"}), 201)
    assert two.api.get("/api/pools/Common/after").status_code == 404
