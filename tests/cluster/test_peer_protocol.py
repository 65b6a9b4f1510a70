"""The peer protocol's version, announced by both ends of the peer channel: a device of a later release that
still speaks this one's protocol syncs with it; one that shares none is refused, and both say why in the group's
status. (The later release is pretended with the test hook TANDEM_TEST_PEER_PROTOCOL.)"""

from cluster_helpers import check

from waiting import wait_until

NO_COMMON = "no common peer protocol: {them} speaks {theirs}, {me} {mine}; upgrade the older"


def member(node, name: str) -> dict:
    status = node.api.get("/api/device-groups/dg/status").json()
    return next(m for m in status["members"] if m["name"] == name)


def test_a_later_release_that_speaks_this_protocol_syncs_and_one_that_does_not_is_refused(cluster_factory):
    cluster = cluster_factory()
    one, two = cluster.start("dev-1", "dev-2")
    two.device.env = {"TANDEM_TEST_HOOKS": "1", "TANDEM_TEST_PEER_PROTOCOL": "1-2"}  # the next release
    two.device.restart()
    cluster.form()
    check(one.api.post("/api/pools", json={"name": "web"}), 201)
    cluster.wait_converged()

    two.device.env["TANDEM_TEST_PEER_PROTOCOL"] = "2-3"  # a release that dropped this one's protocol
    two.device.restart()
    wait_until(lambda: member(one, "dev-2")["message"] == NO_COMMON.format(
        them="dev-2", theirs="2-3", me="dev-1", mine="1-1"), 10, "dev-1 saying why it cannot sync with dev-2",
        detail=lambda: member(one, "dev-2"))
    wait_until(lambda: member(two, "dev-1")["message"] == NO_COMMON.format(
        them="dev-1", theirs="1-1", me="dev-2", mine="2-3"), 10, "dev-2 saying why from its side",
        detail=lambda: member(two, "dev-1"))
    assert not member(one, "dev-2")["connected"] and member(one, "dev-2")["status"] != "In Sync"
    check(one.api.post("/api/pools", json={"name": "after"}), 201)
    assert two.api.get("/api/pools/Common/after").status_code == 404
