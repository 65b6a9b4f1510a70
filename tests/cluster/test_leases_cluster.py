"""Leases replicate in the device group of their partition, like configuration objects (2 real devices)."""

from cluster_helpers import SYNC_TIMEOUT, check, error_of

from waiting import wait_until


def lease_on(node, partition: str, name: str) -> dict | None:
    response = node.api.get(f"/api/leases/{partition}/{name}")
    return response.json() if response.status_code == 200 else None


def test_a_lease_taken_on_one_device_is_seen_and_honoured_on_the_other(cluster_factory):
    cluster = cluster_factory()
    one, two = cluster.start("dev-1", "dev-2")
    cluster.form()

    acquired = check(one.api.post("/api/leases/Common/k8s/acquire",
                                  json={"holder": "agent-a", "ttl": 60, "data": {"hosts": 2}}), 200).json()
    seen = wait_until(lambda: lease_on(two, "Common", "k8s"), SYNC_TIMEOUT, "the lease on dev-2")
    assert {k: seen[k] for k in ("holder", "version", "expires_at", "data")} == {
        "holder": "agent-a", "version": 1, "expires_at": acquired["expires_at"], "data": {"hosts": 2}}
    refused = two.api.post("/api/leases/Common/k8s/acquire", json={"holder": "agent-b", "ttl": 60})
    assert refused.status_code == 409 and "held by agent-a" in error_of(refused)["message"]

    # renewed on dev-2 by its holder: dev-1 sees the new version
    check(two.api.post("/api/leases/Common/k8s/acquire", json={"holder": "agent-a", "ttl": 60}), 200)
    wait_until(lambda: (lease_on(one, "Common", "k8s") or {}).get("version") == 2, SYNC_TIMEOUT,
               "the renewal on dev-1")
    cluster.wait_in_sync()  # the digests (leases included) agree

    # a lease of a partition the group does not sync stays on its device
    check(one.api.post("/api/partitions", json={"name": "Local"}), 201)
    check(one.api.post("/api/leases/Local/solo/acquire", json={"holder": "agent-a", "ttl": 60}), 200)
    check(one.api.post("/api/leases/Common/after/acquire", json={"holder": "agent-a", "ttl": 60}), 200)
    wait_until(lambda: lease_on(two, "Common", "after"), SYNC_TIMEOUT, "a later lease on dev-2")
    assert [r["partition"] for r in two.api.get("/api/leases").json()["records"]] == ["Common", "Common"]
