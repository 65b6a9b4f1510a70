"""Leases on a real device: acquire, renew, conflict, expiry, compare-and-swap, release and RBAC."""

import time
from datetime import datetime

import httpx
import pytest
from api_http import error_of, session

LEASE = "/api/leases/Common/k8s"


@pytest.fixture
def api(device):
    return session(device)


def acquire(api: httpx.Client, holder: str, ttl: float = 30, path: str = LEASE, **extra) -> httpx.Response:
    return api.post(f"{path}/acquire", json={"holder": holder, "ttl": ttl, **extra})


def test_acquire_then_renew_by_the_holder(api):
    first = acquire(api, "agent-a", 30, data={"hosts": 3})
    assert first.status_code == 200, first.text
    lease = first.json()
    assert {k: lease[k] for k in ("partition", "name", "holder", "ttl", "expired", "version", "data")} == {
        "partition": "Common", "name": "k8s", "holder": "agent-a", "ttl": 30, "expired": False, "version": 1,
        "data": {"hosts": 3}}
    assert 29 < lease["remaining"] <= 30
    acquired, expires = datetime.fromisoformat(lease["acquired_at"]), datetime.fromisoformat(lease["expires_at"])
    assert acquired.utcoffset().total_seconds() == 0 and (expires - acquired).total_seconds() == pytest.approx(30)
    assert api.get(LEASE).json() | {"remaining": 0} == lease | {"remaining": 0}

    time.sleep(0.05)
    renewed = acquire(api, "agent-a", 10).json()
    assert renewed["version"] == 2 and renewed["ttl"] == 10
    assert renewed["acquired_at"] == lease["acquired_at"] and renewed["renewed_at"] > lease["renewed_at"]
    assert renewed["data"] == {"hosts": 3}  # kept when not given
    assert acquire(api, "agent-a", 10, data={"hosts": 4}).json()["data"] == {"hosts": 4}


def test_a_lease_held_by_another_holder_is_refused(api):
    lease = acquire(api, "agent-a").json()
    refused = acquire(api, "agent-b")
    assert refused.status_code == 409
    error = error_of(refused)
    assert error["code"] == "conflict"
    assert error["message"] == f"lease Common/k8s is held by agent-a until {lease['expires_at']}"
    assert api.get(LEASE).json()["holder"] == "agent-a"


def test_an_expired_lease_goes_to_the_next_holder(api):
    first = acquire(api, "agent-a", 0.5).json()
    time.sleep(0.7)
    expired = api.get(LEASE).json()
    assert expired["expired"] is True and expired["remaining"] == 0 and expired["holder"] == "agent-a"
    taken = acquire(api, "agent-b", 30)
    assert taken.status_code == 200, taken.text
    lease = taken.json()
    assert lease["holder"] == "agent-b" and lease["version"] == first["version"] + 1
    assert lease["acquired_at"] > first["acquired_at"] and lease["data"] == {}


def test_compare_and_swap_on_the_version(api):
    assert acquire(api, "agent-a", 0.5, version=0).json()["version"] == 1  # a missing lease is at version 0
    stale = acquire(api, "agent-a", 0.5, version=0)
    assert stale.status_code == 409
    message = error_of(stale)["message"]
    assert "version 1, not 0" in message and "agent-a" in message and "until" in message
    assert acquire(api, "agent-a", 0.5, version=1).json()["version"] == 2
    time.sleep(0.7)
    assert acquire(api, "agent-b", 30, version=1).status_code == 409  # expired, but not at that version
    taken = acquire(api, "agent-b", 30, version=2)
    assert taken.status_code == 200 and taken.json()["holder"] == "agent-b" and taken.json()["version"] == 3
    assert acquire(api, "agent-c", 30, version=3).status_code == 409  # right version, but held


def test_only_the_holder_releases(api):
    assert api.post(f"{LEASE}/release", json={"holder": "agent-a"}).status_code == 404
    lease = acquire(api, "agent-a").json()
    refused = api.post(f"{LEASE}/release", json={"holder": "agent-b"})
    assert refused.status_code == 409 and "held by agent-a" in error_of(refused)["message"]
    unchanged = api.get(LEASE).json()
    assert (unchanged["holder"], unchanged["version"], unchanged["expired"]) == ("agent-a", lease["version"], False)

    released = api.post(f"{LEASE}/release", json={"holder": "agent-a"})
    assert released.status_code == 200
    assert released.json()["expired"] is True and released.json()["version"] == lease["version"] + 1
    again = api.post(f"{LEASE}/release", json={"holder": "agent-a"})
    assert again.status_code == 200 and again.json()["version"] == lease["version"] + 1  # nothing changed
    assert acquire(api, "agent-b").json()["version"] == lease["version"] + 2


def test_a_manager_takes_leases_of_its_partitions_only(api, device):
    assert api.post("/api/partitions", json={"name": "tenant-a"}).status_code == 201
    assert api.post("/api/users", json={"name": "mgr", "role": "manager", "partitions": ["tenant-a"],
                                        "password": "mgr-password"}).status_code == 201
    assert api.post("/api/users", json={"name": "aud", "role": "auditor",
                                        "password": "aud-password"}).status_code == 201
    manager, auditor = session(device, "mgr", "mgr-password"), session(device, "aud", "aud-password")
    assert acquire(api, "admin-agent").status_code == 200

    assert acquire(manager, "mgr-agent", path="/api/leases/tenant-a/k8s").status_code == 200
    for response in (acquire(manager, "mgr-agent"),
                     manager.post(f"{LEASE}/release", json={"holder": "admin-agent"}),
                     manager.delete("/api/leases/tenant-a/k8s"),
                     acquire(auditor, "aud-agent", path="/api/leases/tenant-a/other")):
        assert response.status_code == 403, response.text
    assert manager.get(LEASE).json()["holder"] == "admin-agent"  # every role reads
    assert auditor.get("/api/leases").json()["num_records"] == 2
    assert httpx.get(f"{device.url}/api/leases", verify=False).status_code == 401
    assert httpx.post(f"{device.url}{LEASE}/acquire", json={"holder": "x", "ttl": 5}, verify=False).status_code == 401
    assert manager.post("/api/leases/tenant-a/k8s/release", json={"holder": "mgr-agent"}).status_code == 200

    assert api.delete("/api/leases/tenant-a/k8s").status_code == 204  # an admin removes any lease
    assert api.get("/api/leases/tenant-a/k8s").status_code == 404


def test_leases_are_listed_apart_from_the_configuration(api):
    assert api.post("/api/partitions", json={"name": "apps"}).status_code == 201
    for path in ("/api/leases/apps/b", "/api/leases/apps/a", "/api/leases/Common/c"):
        assert acquire(api, "agent-a", path=path).status_code == 200
    assert acquire(api, "agent-a", path="/api/leases/nowhere/a").status_code == 404

    listed = api.get("/api/leases", params={"partition": "apps"}).json()
    assert [(r["partition"], r["name"]) for r in listed["records"]] == [("apps", "a"), ("apps", "b")]
    first = api.get("/api/leases", params={"limit": 1}).json()
    assert first["num_records"] == 1 and first["next"]
    assert api.get(first["next"]).json()["records"][0]["name"] == "a"
    assert api.get("/api/leases", params={"holder": "nobody"}).json()["num_records"] == 0
    for kind in ("partitions", "monitors", "pools", "virtuals"):
        assert all("holder" not in r for r in api.get(f"/api/{kind}").json()["records"])

    assert api.delete("/api/partitions/apps").status_code == 204  # its leases go with it
    assert [r["partition"] for r in api.get("/api/leases").json()["records"]] == ["Common"]


@pytest.mark.parametrize(("body", "target"), [
    ({"holder": "a", "ttl": 0.1}, "ttl"),
    ({"holder": "a", "ttl": 3601}, "ttl"),
    ({"holder": "a", "ttl": "5"}, "ttl"),
    ({"holder": "", "ttl": 5}, "holder"),
    ({"holder": "x" * 129, "ttl": 5}, "holder"),
    ({"holder": "a\nb", "ttl": 5}, "holder"),
    ({"ttl": 5}, "holder"),
    ({"holder": "a", "ttl": 5, "data": {"blob": "x" * 4096}}, "data"),
    ({"holder": "a", "ttl": 5, "version": -1}, "version"),
    ({"holder": "a", "ttl": 5, "owner": "b"}, "owner"),
])
def test_bad_lease_requests_change_nothing(shared_device, body, target):
    api = session(shared_device)
    before = api.get("/api/device").json()["last_commit_id"]
    response = api.post("/api/leases/Common/bad/acquire", json=body)
    assert response.status_code == 422, response.text
    assert error_of(response)["target"] == target
    assert api.get("/api/device").json()["last_commit_id"] == before
