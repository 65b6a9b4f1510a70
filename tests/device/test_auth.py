"""Authentication and roles against a real device."""

import base64
import time

import httpx
import pytest
from api_http import error_of, session

ENDPOINTS = [
    ("GET", "/api/device"), ("GET", "/api/partitions"), ("POST", "/api/partitions"),
    ("GET", "/api/pools/Common/x"), ("PATCH", "/api/pools/Common/x"), ("DELETE", "/api/pools/Common/x"),
    ("GET", "/api/pools/Common/x/members"), ("GET", "/api/users"), ("GET", "/api/jobs"),
    ("GET", "/api/openapi.json"), ("POST", "/api/auth/logout"), ("GET", "/api/auth/whoami"),
    ("GET", "/api/virtuals"), ("GET", "/api/monitors"), ("DELETE", "/api/virtuals?name=*"),
]


def test_health_needs_no_credentials_and_nothing_else_answers_without(device):
    anonymous = httpx.Client(base_url=device.url, verify=False)
    assert anonymous.get("/api/health").json() == {"status": "ok", "name": "dev-1"}
    for method, path in ENDPOINTS:
        response = anonymous.request(method, path, json={} if method in ("POST", "PATCH") else None)
        assert response.status_code == 401, (method, path, response.text)
        assert error_of(response)["code"] == "unauthorized"
    assert anonymous.get("/api/device", headers={"Authorization": "Bearer forged"}).status_code == 401
    assert anonymous.get("/api/device", headers={"Authorization": "Digest x"}).status_code == 401


def test_login_gives_an_expiring_token_and_wrong_passwords_are_refused(device_factory):
    device = device_factory("dev-1", extra_args=["--token-ttl", "1"])
    client = httpx.Client(base_url=device.url, verify=False)
    wrong = client.post("/api/auth/login", json={"username": "admin", "password": "not-the-password"})
    assert wrong.status_code == 401 and error_of(wrong)["message"] == "wrong username or password"
    assert client.post("/api/auth/login", json={"username": "nobody", "password": "whatever1"}).status_code == 401
    token = client.post("/api/auth/login", json={"username": "admin", "password": device.admin_password}).json()
    assert token["username"] == "admin" and token["role"] == "admin" and token["expires_at"]
    headers = {"Authorization": f"Bearer {token['token']}"}
    assert client.get("/api/device", headers=headers).status_code == 200
    time.sleep(1.2)
    expired = client.get("/api/device", headers=headers)
    assert expired.status_code == 401 and "expired" in error_of(expired)["message"]


def test_basic_auth_and_logout(device):
    raw = httpx.Client(base_url=device.url, verify=False)
    good = base64.b64encode(f"admin:{device.admin_password}".encode()).decode()
    assert raw.get("/api/device", headers={"Authorization": f"Basic {good}"}).status_code == 200
    bad = base64.b64encode(b"admin:wrong-password").decode()
    assert raw.get("/api/device", headers={"Authorization": f"Basic {bad}"}).status_code == 401
    api = session(device)
    assert api.post("/api/auth/logout").status_code == 204
    assert api.get("/api/device").status_code == 401


def test_tokens_survive_a_restart(device):
    api = session(device)
    device.restart()
    assert api.get("/api/device").status_code == 200


@pytest.fixture
def roles(device):
    admin = session(device)
    assert admin.post("/api/partitions", json={"name": "tenant-a"}).status_code == 201
    assert admin.post("/api/partitions", json={"name": "tenant-b"}).status_code == 201
    for name, role, partitions in (("mgr", "manager", ["tenant-a"]), ("aud", "auditor", [])):
        created = admin.post("/api/users", json={"name": name, "role": role, "partitions": partitions,
                                                 "password": f"{name}-password"})
        assert created.status_code == 201, created.text
        assert "password" not in created.json() and "password_hash" not in created.json()
    assert admin.post("/api/pools", json={"partition": "tenant-b", "name": "b-pool"}).status_code == 201
    return admin, session(device, "mgr", "mgr-password"), session(device, "aud", "aud-password")


def test_manager_changes_only_its_partitions(roles):
    admin, manager, _ = roles
    assert manager.post("/api/pools", json={"partition": "tenant-a", "name": "web"}).status_code == 201
    assert manager.patch("/api/pools/tenant-a/web", json={"lb_method": "least-connections"}).status_code == 200
    assert manager.post("/api/pools/tenant-a/web/members", json={"address": "10.0.0.1", "port": 80}).status_code == 201
    for response in (
        manager.post("/api/pools", json={"partition": "tenant-b", "name": "web"}),
        manager.post("/api/pools", json={"name": "web"}),
        manager.patch("/api/pools/tenant-b/b-pool", json={"lb_method": "least-connections"}),
        manager.delete("/api/pools/tenant-b/b-pool"),
        manager.post("/api/pools/tenant-b/b-pool/members", json={"address": "10.0.0.1", "port": 80}),
        manager.delete("/api/pools?name=*"),
        manager.delete("/api/pools?partition=tenant-*"),
        manager.post("/api/partitions", json={"name": "mine"}),
        manager.get("/api/users"),
        manager.post("/api/users", json={"name": "x", "role": "admin", "password": "12345678"}),
    ):
        assert response.status_code == 403, response.text
        assert error_of(response)["code"] == "forbidden"
    assert admin.get("/api/pools/tenant-b/b-pool").json()["lb_method"] == "round-robin"
    assert manager.get("/api/pools/tenant-b/b-pool").status_code == 200  # reads are allowed
    job = manager.delete("/api/pools?partition=tenant-a&name=nothing*")
    assert job.status_code == 202


def test_auditor_reads_only(roles):
    _, _, auditor = roles
    assert auditor.get("/api/pools").status_code == 200
    assert auditor.get("/api/pools/tenant-b/b-pool").status_code == 200
    for response in (
        auditor.post("/api/pools", json={"partition": "tenant-b", "name": "x"}),
        auditor.patch("/api/pools/tenant-b/b-pool", json={"lb_method": "least-connections"}),
        auditor.delete("/api/pools/tenant-b/b-pool"),
        auditor.get("/api/users"),
    ):
        assert response.status_code == 403, response.text


def test_changing_a_user_ends_their_sessions_and_the_last_admin_stays(roles, device):
    admin, manager, _ = roles
    assert admin.patch("/api/users/mgr", json={"password": "new-password"}).status_code == 200
    assert manager.get("/api/pools").status_code == 401
    assert session(device, "mgr", "new-password").get("/api/pools").status_code == 200
    assert admin.delete("/api/users/aud").status_code == 204
    demote = admin.patch("/api/users/admin", json={"role": "auditor"})
    assert demote.status_code == 409 and error_of(demote)["target"] == "role"
    assert admin.delete("/api/users/admin").status_code == 409
    bad = admin.post("/api/users", json={"name": "m2", "role": "manager", "partitions": ["nope"],
                                         "password": "12345678"})
    assert bad.status_code == 422 and error_of(bad)["target"] == "partitions"
    assert admin.post("/api/users", json={"name": "m3", "role": "auditor"}).status_code == 422
    assert admin.delete("/api/partitions/tenant-a").status_code == 409  # mgr is assigned to it
