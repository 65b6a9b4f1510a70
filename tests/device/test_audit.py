"""The audit trail: writes asked of the API (by the API, a batch or an agent), refused logins and refused
permissions, with who, from where, the route, the status and why a refusal; filters and pages; admins and auditors
read it, managers may not; `tandem audit`."""

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from devices import RunningDevice
from tandem.cli.main import app
from waiting import wait_until


@pytest.fixture(scope="module")
def device(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDevice]:
    running = RunningDevice(name="audited", data_dir=tmp_path_factory.mktemp("audit") / "audited").start()
    yield running
    running.stop()


def client(device: RunningDevice, user: str = "admin", password: str | None = None, **headers: str) -> httpx.Client:
    return httpx.Client(base_url=device.url, verify=False, auth=(user, password or device.admin_password),
                        headers=headers)


def test_writes_and_refusals_are_in_the_trail_and_can_be_filtered_and_paged(device: RunningDevice) -> None:
    admin = client(device)
    assert admin.post("/api/partitions", json={"name": "tenant-a"}).status_code == 201
    assert admin.post("/api/users", json={"name": "mgr", "role": "manager", "partitions": ["tenant-a"],
                                          "password": "mgr-password"}).status_code == 201
    assert admin.post("/api/users", json={"name": "aud", "role": "auditor", "password": "aud-password"}
                      ).status_code == 201
    assert admin.post("/api/pools", json={"name": "web"}).status_code == 201
    assert client(device, "mgr", "mgr-password").post("/api/pools", json={"name": "not-mine"}).status_code == 403
    assert httpx.post(f"{device.url}/api/auth/login", json={"username": "mgr", "password": "wrong-password"},
                      verify=False).status_code == 401
    agent = client(device, **{"User-Agent": "tandem-agent/host-7"})
    assert agent.post("/api/pools", json={"partition": "tenant-a", "name": "from-agent"}).status_code == 201
    assert admin.post("/api/batch", json={"operations": [{"action": "create", "resource": "monitors",
                                                          "name": "m", "body": {"type": "tcp"}}]}).status_code == 200
    assert admin.get("/api/pools").status_code == 200  # a read: not in the trail
    assert httpx.post(f"{device.url}/api/pools", json={"name": "x"}, verify=False).status_code == 401  # nor this
    assert client(device, "aud", "wrong-password").get("/api/pools").status_code == 401  # a refused Basic login

    entries = admin.get("/api/audit").json()["records"]
    shown = [(e["user"], e["role"], e["via"], e["action"], e["target"], e["status"]) for e in entries[:6]]
    assert shown == [
        ("aud", "", "api", "GET /api/pools", "/api/pools", 401),
        ("admin", "admin", "batch", "POST /api/batch", "/api/batch", 200),
        ("admin", "admin", "agent host-7", "POST /api/pools", "/api/pools", 201),
        ("mgr", "", "api", "POST /api/auth/login", "/api/auth/login", 401),
        ("mgr", "manager", "api", "POST /api/pools", "/api/pools", 403),
        ("admin", "admin", "api", "POST /api/pools", "/api/pools", 201),
    ], shown
    entries = entries[1:]
    assert entries[2]["detail"] == "wrong username or password" and entries[2]["source"] == "127.0.0.1"
    assert "may change objects only in partitions tenant-a" in entries[3]["detail"]
    assert entries[4]["detail"] == "" and entries[0]["at"] >= entries[4]["at"]

    refusals = admin.get("/api/audit", params={"status": 403}).json()["records"]
    assert [(e["user"], e["status"]) for e in refusals] == [("mgr", 403)]
    assert [e["action"] for e in admin.get("/api/audit", params={"user": "mgr"}).json()["records"]] == [
        "POST /api/auth/login", "POST /api/pools"]
    first = admin.get("/api/audit", params={"limit": 2}).json()
    second = admin.get(first["next"]).json()
    assert [e["id"] for e in first["records"]] + [e["id"] for e in second["records"][:1]] == [
        e["id"] for e in admin.get("/api/audit").json()["records"][:3]]

    assert client(device, "aud", "aud-password").get("/api/audit").status_code == 200
    assert client(device, "mgr", "mgr-password").get("/api/audit").status_code == 403

    def last() -> tuple:
        entry = admin.get("/api/audit", params={"limit": 1}).json()["records"][0]
        return entry["user"], entry["action"], entry["status"]

    wait_until(lambda: last() == ("mgr", "GET /api/audit", 403), 5, "the refused read in the trail", detail=last)


def test_tandem_audit_shows_the_trail(runner: CliRunner, device: RunningDevice) -> None:
    shown = runner.invoke(app, ["audit", "--user", "admin", "--action", "/api/partitions", "-o", "json",
                                "--url", device.url, "--fingerprint", device.fingerprint],
                          env={"TANDEM_PASSWORD": device.admin_password})
    assert shown.exit_code == 0, shown.output
    assert [(e["action"], e["status"]) for e in json.loads(shown.output)] == [("POST /api/partitions", 201)]
    bad = runner.invoke(app, ["audit", "--since", "yesterday", "--url", device.url],
                        env={"TANDEM_PASSWORD": device.admin_password})
    assert bad.exit_code == 1 and "is not a time" in bad.output


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return CliRunner()
