"""ClusterManager and the clustering resources without a device: argument checks, the manage-existing
checks, request shapes. Small in-memory devices answer the few requests these need (pure logic
only: everything that claims a cluster works runs against real devices in test_cluster_manager.py)."""

import itertools
from typing import Any

import httpx
import orjson
import pytest
from fake_device import FakePool

import tandem
from tandem import Client, Cluster, ClusterManager, DeviceGroup, Job, TandemError, TrustedDevice
from tandem.sdk import cluster as cluster_module


class MiniDevice:
    """One device's API, just enough for the manager: login, /api/device, device groups, trust, jobs."""

    def __init__(self, name: str, groups: dict[str, dict[str, Any]] | None = None) -> None:
        self.name = name
        self.groups = groups or {}
        self.trusted: list[dict[str, Any]] = [{"name": name, "self": True}]
        self.requests: list[tuple[str, str, Any]] = []
        self.counter = itertools.count(1)
        self.jobs: dict[str, dict[str, Any]] = {}

    def client(self, url: str | None = None, **kwargs: Any) -> Client:
        client = Client(url or f"https://{self.name}.test:8443", "admin", "secret", **kwargs)
        client._pool = FakePool(client.url, self.handle)  # type: ignore[assignment]
        return client

    @staticmethod
    def answer(status: int, body: Any = None) -> httpx.Response:
        if body is None:
            return httpx.Response(status)
        return httpx.Response(status, content=orjson.dumps(body), headers={"content-type": "application/json"})

    def not_found(self, what: str) -> httpx.Response:
        return self.answer(404, {"error": {"code": "not_found", "message": f"no {what}", "target": what}})

    def handle(self, request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content) if request.content else None
        path = request.url.path
        method = request.method
        if path != "/api/auth/login":
            self.requests.append((method, path, body))
        if path == "/api/auth/login":
            return self.answer(200, {"token": "t", "expires_at": "2999-01-01T00:00:00+00:00"})
        if path == "/api/device":
            return self.answer(200, {"name": self.name, "id": f"id-{self.name}", "fingerprint": "ab:" * 31 + "ab"})
        if path == "/api/trust/devices":
            if method == "POST":
                record = {"name": f"added-{next(self.counter)}", "management_url": body["url"]}
                self.trusted.append(record)
                return self.answer(201, record)
            return self.answer(200, {"records": self.trusted, "num_records": len(self.trusted), "next": None})
        if path.startswith("/api/jobs/"):
            return self.answer(200, self.jobs[path.rsplit("/", 1)[1]])
        parts = path.split("/")[3:]  # after /api/device-groups
        if path.startswith("/api/device-groups/") and parts:
            group = self.groups.get(parts[0])
            if group is None:
                return self.not_found(parts[0])
            if len(parts) == 1:
                return self.answer(200, group)
            if parts[1] == "status":
                return self.answer(200, {"name": parts[0], "status": "In Sync", "members": [], "conflicts": []})
            if parts[1] == "sync":
                job_id = f"job{next(self.counter)}"
                self.jobs[job_id] = {"id": job_id, "state": "succeeded", "result": {"from": body["from"]}}
                return self.answer(202, {"id": job_id, "state": "running"})
            if parts[1] == "conflicts":
                return self.answer(204)
        return self.not_found(path)


def group(name: str = "dg", type: str = "sync-failover", members: list[str] | None = None,
          partitions: list[str] | None = None) -> dict[str, Any]:
    return {"name": name, "type": type, "members": members if members is not None else ["dev-1", "dev-2"],
            "partitions": partitions or ["Common"], "auto_sync": True}


def pair(**group_fields: Any) -> tuple[list[MiniDevice], list[Client]]:
    devices = [MiniDevice(name, {"dg": group(**group_fields)}) for name in ("dev-1", "dev-2")]
    return devices, [d.client() for d in devices]


# --- the public names ------------------------------------------------------------------


def test_exports() -> None:
    assert tandem.ClusterManager is ClusterManager and tandem.Cluster is Cluster
    assert tandem.sdk.DeviceGroup is DeviceGroup and tandem.sdk.TrustedDevice is TrustedDevice
    assert Cluster._fields == ("device_group_name", "device_group_type", "device_group_partition", "devices")
    assert ClusterManager().cluster is None


# --- argument checks (before any request) ----------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"devices": []}, "at least one device"),
        ({"devices": "https://a.test"}, "list of tandem.Client"),
        ({"devices": ["https://a.test"]}, "device 0 is a str"),
        ({"device_group_name": ""}, "device_group_name"),
        ({"device_group_type": "active-active"}, "sync-failover, sync-only"),
        ({"device_group_partition": ""}, "device_group_partition"),
    ],
)
def test_create_refuses_bad_arguments_before_any_request(kwargs: dict[str, Any], message: str) -> None:
    devices, clients = pair()
    arguments = {"devices": clients, "device_group_name": "dg", **kwargs}
    with pytest.raises(TandemError) as caught:
        ClusterManager().create(**arguments)
    assert caught.value.code == "invalid_argument"
    assert message in caught.value.message
    assert all(not d.requests for d in devices)


def test_create_refuses_the_same_device_twice() -> None:
    devices, clients = pair()
    with pytest.raises(TandemError, match="given twice"):
        ClusterManager().create(devices=[clients[0], clients[1], clients[0]], device_group_name="dg")
    same_url = devices[1].client(url=clients[0].url + "/")
    with pytest.raises(TandemError, match="given twice"):
        ClusterManager().create(devices=[clients[0], same_url], device_group_name="dg")
    assert all(not d.requests for d in devices)
    # two URLs that lead to one device: found out from the device names
    alias = devices[0].client(url="https://alias.test:8443")
    with pytest.raises(TandemError, match=r"are the same device \(dev-1\)"):
        ClusterManager().create(devices=[clients[0], alias], device_group_name="dg")


def test_create_refuses_more_devices_than_the_type_holds() -> None:
    clients = [MiniDevice(f"dev-{i}").client() for i in range(1, 10)]
    with pytest.raises(TandemError, match="at most 8 devices, 9 given"):
        ClusterManager().create(devices=clients, device_group_name="dg")
    too_many = [MiniDevice(f"dev-{i}").client() for i in range(1, 34)]
    with pytest.raises(TandemError, match="at most 32 devices"):
        ClusterManager().create(devices=too_many, device_group_name="dg", device_group_type="sync-only")


def test_a_manager_without_a_cluster_refuses_to_change_one() -> None:
    manager = ClusterManager()
    _, clients = pair()
    for call in (manager.teardown, lambda: manager.add_devices(clients[1]), lambda: manager.remove_devices(clients[1])):
        with pytest.raises(TandemError) as caught:
            call()
        assert caught.value.code == "invalid_state"


def test_unknown_or_missing_keyword_arguments() -> None:
    _, clients = pair()
    with pytest.raises(TandemError, match="unknown argument"):
        ClusterManager(devices=clients, device_group_name="dg", device_group_kind="x")
    with pytest.raises(TandemError, match="needs device_group_name"):
        ClusterManager(devices=clients)
    with pytest.raises(TandemError, match="needs devices"):
        ClusterManager(device_group_name="dg")


# --- managing an existing cluster ------------------------------------------------------


def test_manage_existing_with_the_right_arguments() -> None:
    devices, clients = pair()
    manager = ClusterManager(devices=clients, device_group_name="dg", device_group_type="sync-failover",
                             device_group_partition="Common")
    assert manager.cluster == Cluster("dg", "sync-failover", "Common", clients)
    assert manager.cluster.devices is clients
    # every device was asked
    assert all(("GET", "/api/device-groups/dg", None) in d.requests for d in devices)
    assert "dev-1" in repr(manager)
    # one cluster per manager
    with pytest.raises(TandemError) as caught:
        manager.create(devices=clients, device_group_name="other")
    assert caught.value.code == "invalid_state"
    with pytest.raises(TandemError, match="already manages cluster 'dg'"):
        manager.manage_existing(devices=clients, device_group_name="dg")


def test_manage_existing_names_what_differs() -> None:
    _, clients = pair()
    with pytest.raises(TandemError) as caught:
        ClusterManager(devices=clients, device_group_name="dg", device_group_type="sync-only")
    assert caught.value.code == "cluster_mismatch"
    assert "on dev-1, 'dg' is of type sync-failover, not sync-only" in caught.value.message
    assert "on dev-2" in caught.value.message

    with pytest.raises(TandemError, match=r"syncs partitions \[Common\], not tenant1"):
        ClusterManager(devices=clients, device_group_name="dg", device_group_partition="tenant1")

    with pytest.raises(TandemError, match="dev-1 has no device group 'nope'"):
        ClusterManager(devices=clients, device_group_name="nope")


def test_manage_existing_checks_the_members() -> None:
    _, clients = pair(members=["dev-1", "dev-2", "dev-3"])
    with pytest.raises(TandemError) as caught:
        ClusterManager(devices=clients, device_group_name="dg")
    message = caught.value.message
    assert "the members of 'dg' are [dev-1, dev-2, dev-3]" in message
    assert "members not given: [dev-3]" in message

    _, clients = pair(members=["dev-1"])
    with pytest.raises(TandemError, match=r"not members: \[dev-2\]"):
        ClusterManager(devices=clients, device_group_name="dg")


def test_manage_existing_when_one_device_differs() -> None:
    devices, clients = pair()
    devices[1].groups["dg"] = group(type="sync-only")
    with pytest.raises(TandemError) as caught:
        ClusterManager(devices=clients, device_group_name="dg")
    assert "on dev-2, 'dg' is of type sync-only" in caught.value.message
    assert "on dev-1" not in caught.value.message


def test_remove_devices_refuses_the_root_and_strangers() -> None:
    _, clients = pair()
    manager = ClusterManager(devices=clients, device_group_name="dg")
    with pytest.raises(TandemError, match="dev-1 is the root"):
        manager.remove_devices(clients[0])
    with pytest.raises(TandemError, match="dev-9 is not a device of cluster dg"):
        manager.remove_devices(MiniDevice("dev-9").client())
    with pytest.raises(TandemError, match="needs at least one device"):
        manager.remove_devices()
    with pytest.raises(TandemError, match="given twice"):
        manager.add_devices(clients[1])
    assert manager.cluster is not None and manager.cluster.devices is clients


# --- sync status ------------------------------------------------------------------------


def _member(name: str, status: str = "In Sync", message: str = "") -> dict[str, Any]:
    return {"name": name, "status": status, "connected": True, "pending_changes": 0, "message": message}


def test_describe_status() -> None:
    describe = cluster_module._describe_status
    expected = {"dev-1", "dev-2"}
    good = {"status": "In Sync", "members": [_member("dev-1"), _member("dev-2")]}
    assert describe("dev-1", good, expected) == (True, "")
    done, why = describe("dev-2", {"status": "In Sync", "members": [_member("dev-1")]}, expected)
    assert not done and why == "dev-2 sees members [dev-1], expecting [dev-1, dev-2]"
    pending = {"status": "Awaiting Initial Sync",
               "members": [_member("dev-1"), _member("dev-2", "Awaiting Initial Sync", "waiting for dev-1")]}
    done, why = describe("dev-1", pending, expected)
    assert not done
    assert why == "dev-1 sees Awaiting Initial Sync (dev-2: Awaiting Initial Sync (waiting for dev-1))"


def test_wait_times_out_with_the_last_word(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster_module, "POLL_INTERVAL", 0.001)
    calls = itertools.count()
    with pytest.raises(TandemError) as caught:
        cluster_module._wait(lambda: (False, f"try {next(calls)}"), 0, 0.5, "the group")
    assert caught.value.code == "timeout"
    assert caught.value.message == "waited 0.5 s for the group; last seen: try 0"


# --- the resources ------------------------------------------------------------------------


def test_resource_paths() -> None:
    assert DeviceGroup(name="dg")._item_path() == "/api/device-groups/dg"
    assert TrustedDevice(name="dev-2")._item_path() == "/api/trust/devices/dev-2"
    assert DeviceGroup._collection_path({}) == "/api/device-groups"
    assert TrustedDevice._collection_path({}) == "/api/trust/devices"


def test_trusted_device_add_forgets_the_password() -> None:
    device = MiniDevice("dev-1")
    client = device.client()
    added = TrustedDevice.add("https://dev-2.test:8443", "admin", "pw", "sha256:" + "ab" * 32, connection=client)
    assert device.requests[-1] == ("POST", "/api/trust/devices", {
        "url": "https://dev-2.test:8443", "username": "admin", "password": "pw", "fingerprint": "sha256:" + "ab" * 32})
    assert added.name == "added-1"
    assert "password" not in added.to_dict()
    assert "pw" not in repr(added)
    without_pin = TrustedDevice(url="https://dev-3.test:8443", username="admin", password="pw").post(connection=client)
    assert "fingerprint" not in device.requests[-1][2]
    assert "password" not in without_pin.to_dict()


def test_device_group_status_sync_and_conflicts() -> None:
    device = MiniDevice("dev-1", {"dg": group()})
    client = device.client()
    dg = DeviceGroup(name="dg", connection=client)
    assert dg.status()["status"] == "In Sync"
    assert device.requests[-1][:2] == ("GET", "/api/device-groups/dg/status")
    job = dg.sync("dev-2")
    assert isinstance(job, Job) and job.state == "succeeded" and job.result == {"from": "dev-2"}
    assert ("POST", "/api/device-groups/dg/sync", {"from": "dev-2"}) in device.requests
    running = dg.sync("dev-2", poll=False)
    assert running.state == "running"
    dg.clear_conflicts()
    assert device.requests[-1] == ("DELETE", "/api/device-groups/dg/conflicts", None)
    with pytest.raises(TandemError) as caught:
        DeviceGroup(name="nope").status(connection=client)
    assert caught.value.status_code == 404


def test_client_keeps_what_trust_needs() -> None:
    client = Client("https://dev-1.test:8443", "admin", "secret", fingerprint="AB" * 32)
    assert (client.url, client.username, client.password, client.fingerprint) == (
        "https://dev-1.test:8443", "admin", "secret", "ab" * 32)
    with pytest.raises(AttributeError):
        client.password = "other"  # type: ignore[misc]
