"""Users of the whole trust domain: created on one member, valid on every member; a password change or a deletion
reaches every member within a sync and ends the user's sessions there; the last admin stays; a partition assigned
to a manager cannot be deleted; a device joining a domain keeps those of its users the domain does not have."""

import httpx
from cluster_helpers import check

from waiting import wait_until


def can_log_in(node, username: str, password: str) -> bool:
    answer = httpx.post(f"{node.device.url}/api/auth/login", json={"username": username, "password": password},
                        verify=False)
    return answer.status_code == 200


def test_users_are_the_trust_domains(cluster_factory):
    cluster = cluster_factory()
    one, two = cluster.start("dev-1", "dev-2")
    check(two.api.post("/api/users", json={"name": "local-only", "role": "auditor", "password": "local-only-pass"}),
          201)  # made on dev-2 before it joins: it joins the domain with it
    cluster.form()
    wait_until(lambda: can_log_in(one, "local-only", "local-only-pass"), 10, "dev-2's own user valid on dev-1")

    check(one.api.post("/api/partitions", json={"name": "tenant-a"}), 201)  # on dev-1 only: the group syncs Common
    check(one.api.post("/api/users", json={"name": "ops", "role": "manager", "partitions": ["tenant-a"],
                                           "password": "ops-password-1"}), 201)
    wait_until(lambda: can_log_in(two, "ops", "ops-password-1"), 10, "ops valid on dev-2")
    assert check(two.api.get("/api/users/ops"), 200).json() == {
        "name": "ops", "role": "manager", "partitions": ["tenant-a"], "description": ""}
    token = httpx.post(f"{one.device.url}/api/auth/login", json={"username": "ops", "password": "ops-password-1"},
                       verify=False).json()["token"]
    as_ops = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{one.device.url}/api/pools", headers=as_ops, verify=False).status_code == 200

    # changed on dev-2: the old password and dev-1's session of ops end there too
    check(two.api.patch("/api/users/ops", json={"password": "ops-password-2"}), 200)
    wait_until(lambda: can_log_in(one, "ops", "ops-password-2"), 10, "the new password valid on dev-1")
    assert not can_log_in(one, "ops", "ops-password-1")
    assert httpx.get(f"{one.device.url}/api/pools", headers=as_ops, verify=False).status_code == 401

    refused = one.api.delete("/api/partitions/tenant-a")
    assert refused.status_code == 409 and "assigned to user 'ops'" in refused.json()["error"]["message"]
    check(one.api.delete("/api/users/ops"), 204)
    wait_until(lambda: two.api.get("/api/users/ops").status_code == 404, 10, "ops gone on dev-2")
    assert not can_log_in(two, "ops", "ops-password-2")
    check(one.api.delete("/api/partitions/tenant-a"), 204)

    last = two.api.delete("/api/users/admin")
    assert last.status_code == 409 and "last admin" in last.json()["error"]["message"]
    assert {u["name"] for u in check(two.api.get("/api/users"), 200).json()["records"]} == {"admin", "local-only"}
