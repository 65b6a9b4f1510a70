"""The SDK against a real `tandem serve` process (the `device` fixture of tests/conftest.py)."""

import contextlib
import itertools
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from tandem import Client, Job, Monitor, Partition, Pool, PoolMember, TandemError, User, VirtualServer
from tandem.sdk import connection

_serial = itertools.count(1)


def unique(prefix: str) -> str:
    """A name no other test uses (the device may be shared by the whole session)."""
    return f"{prefix}-{os.getpid()}-{next(_serial)}"


def record(client: Client) -> list[tuple[str, str, Any]]:
    """Every request `client` sends from now on, as (method, path?query, JSON body); logs in first."""
    if client.token is None:
        client.login()
    seen: list[tuple[str, str, Any]] = []
    pool = client._connect()
    send = pool.request

    def recording(method: str, target: str, body: bytes | None, *args: Any) -> Any:
        seen.append((method, target, orjson.loads(body) if body else None))
        return send(method, target, body, *args)

    pool.request = recording  # type: ignore[method-assign]
    return seen


@pytest.fixture
def client(device: Any) -> Iterator[Client]:
    client = device.client()
    yield client
    client.close()


@pytest.fixture
def pool(client: Client) -> Iterator[Pool]:
    pool = Pool(name=unique("pool"), connection=client).post()
    yield pool
    with contextlib.suppress(TandemError):
        pool.delete()


# --- the connection ----------------------------------------------------------------------


def test_health_device_whoami(device: Any, client: Client) -> None:
    assert client.health() == {"status": "ok", "name": device.name}
    info = client.device()
    assert info["name"] == device.name
    assert info["fingerprint"].replace(":", "").lower() == device.fingerprint.replace(":", "").lower().removeprefix(
        "sha256"
    )
    assert client.whoami()["username"] == "admin"
    assert client.whoami()["role"] == "admin"


def test_fingerprint_in_every_form_pins_the_certificate(device: Any) -> None:
    hex_digits = device.fingerprint.lower().removeprefix("sha256:").replace(":", "")
    pairs = ":".join(hex_digits[i : i + 2] for i in range(0, 64, 2))
    for form in (device.fingerprint, hex_digits, hex_digits.upper(), pairs, "sha256:" + pairs.upper()):
        with Client(device.url, "admin", device.admin_password, fingerprint=form) as client:
            assert client.device()["name"] == device.name
            client.close()


def test_wrong_fingerprint_fails_before_login(device: Any) -> None:
    hex_digits = device.fingerprint.lower().removeprefix("sha256:").replace(":", "")
    wrong = ("0" if hex_digits[0] != "0" else "1") + hex_digits[1:]
    client = Client(device.url, "admin", device.admin_password, fingerprint=wrong)
    with pytest.raises(TandemError) as err:
        client.device()
    assert err.value.code == "fingerprint_mismatch"
    assert device.url in err.value.message
    assert client.token is None and client._pool is None  # no connection was opened to send credentials


def test_self_signed_certificate_is_refused_without_a_pin(device: Any) -> None:
    with pytest.raises(TandemError) as err:
        Client(device.url, "admin", device.admin_password).device()
    assert err.value.code == "connection_error"
    assert client_token_free(err.value)
    with Client(device.url, "admin", device.admin_password, verify=False) as insecure:
        assert insecure.device()["name"] == device.name
        insecure.close()


def client_token_free(err: TandemError) -> bool:
    return "certificate" in err.message.lower() or "ssl" in err.message.lower()


def test_relogin_after_the_token_is_revoked(client: Client) -> None:
    client.device()
    first = client.token
    client.request("POST", "/api/auth/logout")
    seen = record(client)
    assert client.device()
    assert client.token != first
    assert [f"{m} {p}" for m, p, _ in seen] == ["GET /api/device", "POST /api/auth/login", "GET /api/device"]


def test_bad_password(device: Any) -> None:
    wrong = device.client(password="wrong-password")
    with pytest.raises(TandemError) as err:
        wrong.device()
    wrong.close()
    assert (err.value.status_code, err.value.code) == (401, "unauthorized")


def test_default_connection_from_context_and_module(client: Client) -> None:
    name = unique("ctx")
    with client:
        Partition(name=name).post()
        assert Partition.find(name=name).name == name
    with pytest.raises(TandemError):
        Partition(name=name).get()
    try:
        connection.CONNECTION = client
        Partition(name=name).delete()
    finally:
        connection.CONNECTION = None


# --- CRUD of every resource ------------------------------------------------------------


def test_partition_crud(client: Client) -> None:
    name = unique("part")
    part = Partition(name=name, description="tenant", connection=client).post()
    assert part.to_dict() == {"name": name, "description": "tenant"}
    assert Partition(name=name, connection=client).get().description == "tenant"
    part.description = "changed"
    assert part.patch().description == "changed"
    assert [p.name for p in Partition.get_collection(connection=client, name=name)] == [name]
    part.delete()
    with pytest.raises(TandemError) as err:
        part.get()
    assert err.value.status_code == 404


def test_monitor_crud(client: Client) -> None:
    name = unique("mon")
    mon = Monitor(name=name, type="http", connection=client).post()
    assert (mon.partition, mon.path, mon.expected_status, mon.interval) == ("Common", "/", 200, 5.0)
    mon.interval = 2.5
    mon.path = "/health"
    mon.patch()
    again = Monitor(partition="Common", name=name, connection=client).get()
    assert (again.interval, again.path) == (2.5, "/health")
    mon.delete()
    assert list(Monitor.get_collection(connection=client, name=name)) == []


def test_pool_and_member_crud(client: Client) -> None:
    name = unique("pool")
    pool = Pool(name=name, lb_method="least-connections",
                members=[{"address": "10.9.0.1", "port": 80}], connection=client).post()
    assert pool.members == [{"address": "10.9.0.1", "port": 80, "state": "enabled", "weight": 1, "description": "",
                             "enabled": True}]
    v6 = PoolMember("Common", name, address="2001:DB8:0::0001", port=8080, connection=client).post()
    assert v6.address == "2001:db8::1"
    assert v6.to_dict() == {"address": "2001:db8::1", "port": 8080, "state": "enabled", "weight": 1,
                            "description": "", "enabled": True}
    v6.enabled = False
    v6.patch()
    read = PoolMember("Common", name, address="2001:db8::1", port=8080, connection=client).get()
    assert read.enabled is False
    assert {(m["address"], m["port"]) for m in pool.get().members} == {("10.9.0.1", 80), ("2001:db8::1", 8080)}
    members = list(PoolMember.get_collection("Common", name, connection=client))
    assert {(m.address, m.port) for m in members} == {("10.9.0.1", 80), ("2001:db8::1", 8080)}
    assert all(m.pool == name and m.partition == "Common" for m in members)
    v6.delete()
    assert [m["address"] for m in pool.get().members] == ["10.9.0.1"]
    pool.delete()


def test_virtual_server_crud(client: Client, pool: Pool) -> None:
    name = unique("vs")
    vs = VirtualServer(name=name, address="127.0.10.1", port=8081, pool=pool.name, connection=client).post()
    assert (vs.partition, vs.pool, vs.enabled, vs.traffic_group) == ("Common", pool.name, True, "traffic-group-1")
    vs.enabled = False
    vs.patch()
    assert VirtualServer(name=name, connection=client).get().enabled is False
    vs.delete()


def test_user_crud(device: Any, client: Client) -> None:
    name = unique("user")
    user = User(name=name, role="auditor", password="first-password", connection=client).post()
    assert "password" not in User(name=name, connection=client).get().to_dict()
    with device.client(name, "first-password") as theirs:
        assert theirs.whoami() == {"username": name, "role": "auditor", "partitions": []}
        theirs.close()
    seen = record(client)
    user.description = "reads only"
    user.patch()
    assert seen[-1][2] == {"description": "reads only"}  # the password is not sent again
    user.delete()


def test_jobs_are_resources(client: Client) -> None:
    job = Pool.delete_collection(connection=client, name=unique("nothing"))
    assert job.state == "succeeded"
    assert Job(id=job.id, connection=client).get().state == "succeeded"
    assert job.id in {j.id for j in Job.get_collection(connection=client)}


# --- patch and hydrate -----------------------------------------------------------------


def test_patch_sends_only_what_changed(device: Any, client: Client, pool: Pool) -> None:
    seen = record(client)
    pool.patch()
    assert seen == []  # nothing changed: nothing sent

    other = device.client()
    theirs = Pool(name=pool.name, connection=other).get()
    theirs.description = "changed elsewhere"
    theirs.patch()
    other.close()

    pool.lb_method = "least-connections"
    pool.patch()
    assert seen == [("PATCH", f"/api/pools/Common/{pool.name}", {"lb_method": "least-connections"})]
    stored = Pool(name=pool.name, connection=client).get()
    assert (stored.lb_method, stored.description) == ("least-connections", "changed elsewhere")


def test_hydrate_reads_again(client: Client) -> None:
    seen = record(client)
    name = unique("hyd")
    pool = Pool(name=name, connection=client).post(hydrate=True)
    assert [m for m, _, _ in seen] == ["POST", "GET"]
    assert pool.lb_method == "round-robin"
    pool.description = "x"
    pool.patch(hydrate=True)
    assert [m for m, _, _ in seen] == ["POST", "GET", "PATCH", "GET"]
    pool.delete()


# --- collections -----------------------------------------------------------------------


def test_get_collection_pages_through_1200_members(client: Client, pool: Pool) -> None:
    for i in range(1200):
        PoolMember("Common", pool.name, address=f"10.20.{i // 200}.{i % 200 + 1}", port=80, connection=client).post()
    everything = list(PoolMember.get_collection("Common", pool.name, connection=client))
    assert len(everything) == 1200
    seen = record(client)
    paged = list(PoolMember.get_collection("Common", pool.name, connection=client, limit=500))
    assert len(seen) == 3 and len(paged) == 1200
    assert {(m.address, m.port) for m in paged} == {(m.address, m.port) for m in everything}
    first = list(PoolMember.get_collection("Common", pool.name, connection=client, limit=500, max_records=700))
    assert len(first) == 700 and len(seen) == 5
    assert first == first and [m.address for m in first] == [m.address for m in paged[:700]]
    only = list(PoolMember.get_collection("Common", pool.name, connection=client, fields="enabled",
                                          address="10.20.5.*"))
    assert len(only) == 200
    assert set(only[0].to_dict()) == {"address", "port", "enabled"}


def test_filters_and_find(client: Client) -> None:
    stem = unique("find")
    for suffix in ("a", "b"):
        Pool(name=f"{stem}-{suffix}", description=stem, connection=client).post()
    assert {p.name for p in Pool.get_collection(connection=client, name=f"{stem}-*")} == {f"{stem}-a", f"{stem}-b"}
    assert [p.name for p in Pool.get_collection(connection=client, name=f"{stem}-?", max_records=1)] == [f"{stem}-a"]
    assert Pool.find(connection=client, name=f"{stem}-b").name == f"{stem}-b"
    with pytest.raises(TandemError) as err:
        Pool.find(connection=client, name=f"{stem}-zzz")
    assert (err.value.status_code, err.value.code) == (404, "not_found")
    with pytest.raises(TandemError) as err:
        Pool.find(connection=client, description=stem)
    assert err.value.code == "ambiguous"
    job = Pool.delete_collection(connection=client, name=f"{stem}-*")
    assert job.state == "succeeded"
    assert list(Pool.get_collection(connection=client, name=f"{stem}-*")) == []


def test_patch_and_delete_collection(client: Client, pool: Pool) -> None:
    for i in range(1, 21):
        PoolMember("Common", pool.name, address=f"10.30.0.{i}", port=443, connection=client).post()
    job = PoolMember.patch_collection({"enabled": False}, "Common", pool.name, connection=client,
                                      address="10.30.0.1?")
    assert isinstance(job, Job) and job.state == "succeeded" and job.finished_at
    disabled = list(PoolMember.get_collection("Common", pool.name, connection=client, enabled=False))
    assert sorted(m.address for m in disabled) == sorted(f"10.30.0.{i}" for i in range(10, 20))
    job = PoolMember.delete_collection("Common", pool.name, connection=client, enabled=False)
    assert job.state == "succeeded"
    assert len(list(PoolMember.get_collection("Common", pool.name, connection=client))) == 10
    running = Pool.patch_collection({"description": "bulk"}, connection=client, poll=False, name=pool.name)
    assert running.poll().state == "succeeded"
    assert pool.get().description == "bulk"


def test_bulk_change_without_a_filter_is_refused(client: Client) -> None:
    with pytest.raises(TandemError) as err:
        Pool.delete_collection(connection=client)
    assert (err.value.status_code, err.value.code) == (400, "bad_request")


# --- errors ----------------------------------------------------------------------------


def test_not_found_error(client: Client) -> None:
    with pytest.raises(TandemError) as err:
        Pool(name=unique("missing"), connection=client).get()
    assert (err.value.status_code, err.value.code) == (404, "not_found")
    assert err.value.message and err.value.target


def test_duplicate_is_a_conflict(client: Client, pool: Pool) -> None:
    with pytest.raises(TandemError) as err:
        Pool(name=pool.name, connection=client).post()
    assert (err.value.status_code, err.value.code) == (409, "conflict")
    assert pool.name in err.value.message or pool.name in (err.value.target or "")


def test_bad_address_is_a_validation_error(client: Client, pool: Pool) -> None:
    with pytest.raises(TandemError) as err:
        PoolMember("Common", pool.name, address="10.0.0.300", port=80, connection=client).post()
    assert (err.value.status_code, err.value.code, err.value.target) == (422, "validation_error", "address")
    assert "10.0.0.300" in err.value.message


# --- staying connected -----------------------------------------------------------------


def test_expired_token_logs_in_again(device_factory: Any) -> None:
    device = device_factory("ttl", extra_args=["--token-ttl", "1"])
    client = device.client()
    client.device()
    first = client.token
    time.sleep(1.5)
    assert client.device()["name"] == "ttl"
    assert client.token != first
    client.close()


def test_same_client_after_the_device_restarts(device: Any) -> None:
    client = device.client()
    name = unique("restart")
    Partition(name=name, connection=client).post()
    device.kill()
    with pytest.raises(TandemError) as err:
        client.device()
    assert err.value.code == "connection_error"
    device.start()
    assert Partition(name=name, connection=client).get().name == name  # acknowledged writes survive kill -9
    client.close()


def test_get_some_fields(client: Client, pool: Pool) -> None:
    # docs/api.md documents `fields=` for collections only: an item GET may answer every field.
    partial = Pool(name=pool.name, connection=client).get(fields=["description"])
    assert {"partition", "name", "description"} <= set(partial.to_dict())


def test_threads_share_one_client(client: Client, pool: Pool) -> None:
    errors: list[BaseException] = []

    def add(base: int) -> None:
        try:
            for i in range(50):
                PoolMember("Common", pool.name, address=f"10.40.{base}.{i + 1}", port=80, connection=client).post()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(pool.get().members) == 200
