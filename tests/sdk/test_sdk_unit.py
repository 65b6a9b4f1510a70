"""SDK behaviour without a device: URLs, changed fields, errors, auth, paging, jobs, default connections."""

import threading
from typing import Any

import httpx
import pytest
from fake_device import FakeDevice

import tandem
from tandem.sdk import (
    Client,
    Job,
    Monitor,
    Partition,
    Pool,
    PoolMember,
    TandemError,
    User,
    VirtualServer,
    set_default,
)
from tandem.sdk import connection as defaults


@pytest.fixture
def fake() -> FakeDevice:
    return FakeDevice()


@pytest.fixture
def client(fake: FakeDevice) -> Client:
    return fake.client()


# --- URLs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "path"),
    [
        (Partition(name="tenant1"), "/api/partitions/tenant1"),
        (Monitor(name="m"), "/api/monitors/Common/m"),
        (Pool(partition="tenant1", name="web"), "/api/pools/tenant1/web"),
        (VirtualServer(name="vs"), "/api/virtuals/Common/vs"),
        (User(name="alice"), "/api/users/alice"),
        (Job(id="abc"), "/api/jobs/abc"),
        (PoolMember("Common", "web", address="10.0.0.1", port=80), "/api/pools/Common/web/members/10.0.0.1:80"),
        (PoolMember("t", "web", address="2001:db8::1", port=443), "/api/pools/t/web/members/[2001:db8::1]:443"),
        (PoolMember(partition="t", pool="p", address="::1", port=1), "/api/pools/t/p/members/[::1]:1"),
        (Pool(name="a b/c"), "/api/pools/Common/a%20b%2Fc"),
    ],
)
def test_item_paths(obj: tandem.sdk.Resource, path: str) -> None:
    assert obj._item_path() == path


def test_collection_paths() -> None:
    assert Pool._collection_path({}) == "/api/pools"
    assert PoolMember._collection_path({"partition": "Common", "pool": "web"}) == "/api/pools/Common/web/members"


def test_missing_identity_is_an_error() -> None:
    with pytest.raises(TandemError) as err:
        Pool(lb_method="round-robin")._item_path()
    assert (err.value.code, err.value.target) == ("missing_identity", "name")
    with pytest.raises(TandemError) as err:
        PoolMember(address="10.0.0.1", port=80)._item_path()
    assert err.value.code == "missing_identity"
    with pytest.raises(TandemError):
        Pool(name="..")._item_path()
    with pytest.raises(TandemError):
        PoolMember("Common", address="10.0.0.1", port=80)


def test_fields_are_attributes_and_parent_keys_are_not_fields() -> None:
    member = PoolMember("Common", "web", address="10.0.0.1", port=80)
    assert (member.partition, member.pool, member.address, member.port) == ("Common", "web", "10.0.0.1", 80)
    assert member.to_dict() == {"address": "10.0.0.1", "port": 80}
    assert Pool(partition="Common", name="web").name == "web"
    with pytest.raises(AttributeError):
        _ = Pool(name="web").lb_method
    assert repr(member) == "PoolMember('Common', 'web', address='10.0.0.1', port=80)"
    assert "members=[... 10 items]" in repr(Pool(name="p", members=[{}] * 10))


# --- changed fields --------------------------------------------------------------------


def test_changes_without_a_known_state_are_all_non_identity_fields() -> None:
    pool = Pool(partition="Common", name="web", lb_method="round-robin", description="x")
    assert pool._changes() == {"lb_method": "round-robin", "description": "x"}


def test_changes_compare_deeply_with_the_last_state() -> None:
    pool = Pool._from_record(
        {"partition": "Common", "name": "web", "lb_method": "round-robin", "monitor": None,
         "members": [{"address": "10.0.0.1", "port": 80, "enabled": True}], "description": ""},
        {},
        FakeDevice().client(),
    )
    assert pool._changes() == {}
    pool.members[0]["enabled"] = False  # in place: still seen
    pool.description = ""
    assert pool._changes() == {"members": [{"address": "10.0.0.1", "port": 80, "enabled": False}]}
    pool.monitor = "tcp"
    assert set(pool._changes()) == {"members", "monitor"}
    pool.name = "other"
    with pytest.raises(TandemError) as err:
        pool._changes()
    assert err.value.target == "name"


def test_changes_see_type_changes() -> None:
    member = PoolMember._from_record({"address": "10.0.0.1", "port": 80, "enabled": True}, {}, None)  # type: ignore[arg-type]
    member.enabled = 1
    assert member._changes() == {"enabled": 1}


# --- errors ----------------------------------------------------------------------------


def _error(status: int, content: bytes) -> TandemError:
    return TandemError.from_response(httpx.Response(status, content=content))


def test_error_from_the_api_error_body() -> None:
    err = _error(422, b'{"error": {"code": "validation_error", "message": "bad address", "target": "address"}}')
    assert (err.status_code, err.code, err.message, err.target) == (422, "validation_error", "bad address", "address")
    assert str(err) == "422 validation_error: bad address (target: address)"


def test_error_fallbacks() -> None:
    err = _error(404, b'{"detail": "Not Found"}')
    assert (err.code, err.message) == ("not_found", "Not Found")
    err = _error(422, b'{"detail": [{"loc": ["body", "port"], "msg": "too big", "type": "x"}]}')
    assert (err.code, err.message, err.target) == ("validation_error", "too big", "port")
    err = _error(502, b"<html>bad gateway</html>")
    assert (err.status_code, err.code, err.message) == (502, "server_error", "<html>bad gateway</html>")
    err = _error(409, b"")
    assert (err.code, err.message) == ("conflict", "Conflict")
    assert str(TandemError(None, "no_connection", "no connection")) == "no_connection: no connection"


def test_connection_error_names_the_url() -> None:
    client = Client("http://127.0.0.1:9", "admin", "secret", timeout=2)
    with pytest.raises(TandemError) as err:
        client.device()
    assert err.value.status_code is None
    assert err.value.code == "connection_error"
    assert "http://127.0.0.1:9" in err.value.message


def test_bad_url() -> None:
    with pytest.raises(TandemError) as err:
        Client("device.example:8443")
    assert err.value.code == "bad_url"


# --- auth ------------------------------------------------------------------------------


def test_lazy_login_then_bearer_token(fake: FakeDevice, client: Client) -> None:
    assert fake.requests == []
    assert client.health() == {"status": "ok", "name": "fake"}
    assert fake.paths() == ["GET /api/health"]  # no credentials needed, none used
    Pool(name="web").post(connection=client)
    Pool(name="web").get(connection=client)
    assert fake.paths()[1:] == ["POST /api/auth/login", "POST /api/pools", "GET /api/pools/Common/web"]


def test_relogin_once_after_revocation(fake: FakeDevice, client: Client) -> None:
    client.request("POST", "/api/partitions", json={"name": "p1"})
    fake.tokens.clear()
    assert client.request("GET", "/api/partitions/Common/p1")["name"] == "p1"
    assert fake.paths()[-3:] == ["GET /api/partitions/Common/p1", "POST /api/auth/login",
                                 "GET /api/partitions/Common/p1"]


def test_explicit_token_without_credentials(fake: FakeDevice) -> None:
    fake.tokens.add("given")
    client = fake.client()
    client.username = None
    client._token = "given"
    assert client.request("GET", "/api/pools")["records"] == []
    fake.tokens.clear()
    with pytest.raises(TandemError) as err:
        client.request("GET", "/api/pools")
    assert err.value.status_code == 401
    assert "POST /api/auth/login" not in fake.paths()


def test_logout_forgets_the_token(fake: FakeDevice, client: Client) -> None:
    client.login()
    client.logout()
    assert client.token is None and not fake.tokens


# --- resources against the fake --------------------------------------------------------


def test_post_takes_the_stored_resource_and_hydrate_reads_again(fake: FakeDevice, client: Client) -> None:
    pool = Pool(name="web", lb_method="round-robin", connection=client).post()
    assert pool.stored is True and pool.partition == "Common"
    assert fake.requests[-1][2] == {"name": "web", "lb_method": "round-robin"}
    Pool(name="api", connection=client).post(hydrate=True)
    assert fake.paths()[-2:] == ["POST /api/pools", "GET /api/pools/Common/api"]


def test_patch_sends_only_changes_and_nothing_when_unchanged(fake: FakeDevice, client: Client) -> None:
    pool = Pool(name="web", lb_method="round-robin", description="", connection=client).post()
    count = len(fake.requests)
    pool.patch()
    assert len(fake.requests) == count
    pool.description = "front"
    pool.patch()
    assert fake.requests[-1] == ("PATCH", "/api/pools/Common/web", {"description": "front"})
    pool.lb_method = "least-connections"
    pool.patch(hydrate=True)
    assert fake.requests[-2][2] == {"lb_method": "least-connections"}
    assert fake.paths()[-1] == "GET /api/pools/Common/web"


def test_user_password_is_not_resent(fake: FakeDevice, client: Client) -> None:
    fake.items["/api/users/Common/alice"] = {}  # the fake keys users like pools
    user = User(name="alice", role="admin", password="secret-pass", connection=client)
    user._last = {"name": "alice", "role": "admin", "password": "secret-pass"}
    user.role = "auditor"
    assert user._changes() == {"role": "auditor"}


def test_delete(fake: FakeDevice, client: Client) -> None:
    pool = Pool(name="web", connection=client).post()
    assert pool.delete() is None
    with pytest.raises(TandemError) as err:
        pool.get()
    assert (err.value.status_code, err.value.code) == (404, "not_found")


def test_get_collection_follows_pages(fake: FakeDevice, client: Client) -> None:
    for i in range(25):
        Pool(name=f"p{i:02}", connection=client).post()
    pools = list(Pool.get_collection(connection=client, limit=10))
    assert [p.name for p in pools] == [f"p{i:02}" for i in range(25)]
    assert sum(1 for path in fake.paths() if path.startswith("GET /api/pools")) == 3
    assert all(p._connection is client for p in pools)
    assert [p.name for p in Pool.get_collection(connection=client, max_records=12, limit=5)] == [
        f"p{i:02}" for i in range(12)
    ]
    assert fake.requests[-1][1].endswith("after=10")
    list(Pool.get_collection(connection=client, fields=["name", "lb_method"], enabled=True))
    assert "fields=name%2Clb_method" in fake.requests[-1][1]
    assert "enabled=true" in fake.requests[-1][1]
    assert "limit=10000" in fake.requests[-1][1]


def test_find(fake: FakeDevice, client: Client) -> None:
    Pool(name="a", lb_method="x", connection=client).post()
    Pool(name="b", lb_method="x", connection=client).post()
    assert Pool.find(connection=client, name="a").name == "a"
    assert "limit=2" in fake.requests[-1][1]
    with pytest.raises(TandemError) as err:
        Pool.find(connection=client, name="zzz")
    assert (err.value.status_code, err.value.code) == (404, "not_found")
    with pytest.raises(TandemError) as err:
        Pool.find(connection=client, lb_method="x")
    assert err.value.code == "ambiguous"


def test_collection_jobs_poll_until_done(fake: FakeDevice, client: Client) -> None:
    job = Pool.patch_collection({"description": "x"}, connection=client, name="web*")
    assert isinstance(job, Job) and job.state == "succeeded"
    assert fake.requests[-2][0:3:2] == ("PATCH", {"description": "x"})
    assert fake.requests[-2][1] == "/api/pools?name=web%2A"
    assert fake.requests[-1][1].startswith(f"/api/jobs/{job.id}?wait=")
    job = Pool.delete_collection(connection=client, poll=False, name="web*")
    assert job.state == "running"
    assert job.poll().state == "succeeded"
    assert Job(id=job.id).get(connection=client).state == "succeeded"


def test_failed_job_raises(fake: FakeDevice, client: Client) -> None:
    fake.fail_job = True
    with pytest.raises(TandemError) as err:
        Pool.delete_collection(connection=client, name="*")
    assert (err.value.code, err.value.message, err.value.target) == ("conflict", "still referenced", "/Common/x")


def test_poll_timeout(fake: FakeDevice, client: Client) -> None:
    fake.jobs["slow"] = [{"id": "slow", "description": "slow", "state": "running"}]
    with pytest.raises(TandemError) as err:
        Job(id="slow", connection=client).poll(timeout=0.01)
    assert err.value.code == "timeout"


def test_member_collection_needs_parent_keys(fake: FakeDevice, client: Client) -> None:
    with pytest.raises(TandemError) as err:
        PoolMember.get_collection(connection=client)
    assert err.value.code == "missing_identity"


# --- default connections ---------------------------------------------------------------


def test_no_connection() -> None:
    with pytest.raises(TandemError) as err:
        Pool(name="web").get()
    assert err.value.code == "no_connection"


def test_context_and_module_defaults(fake: FakeDevice) -> None:
    first, second, third = fake.client(), fake.client(), fake.client()
    seen: list[Client] = []

    def record(connection: Any = None) -> Client:
        found = defaults.get_connection(connection)
        seen.append(found)
        return found

    try:
        set_default(first)
        assert record() is first
        with second:
            assert record() is second
            with third:
                assert record() is third
            assert record() is second
            assert record(first) is first
            other: list[Client] = []
            thread = threading.Thread(target=lambda: other.append(defaults.get_connection()))
            thread.start()
            thread.join()
            assert other == [first]  # a `with` is local to its context
        assert record() is first
        defaults.CONNECTION = None
        with pytest.raises(TandemError):
            record()
        assert second._pool is not None  # `with` does not close
    finally:
        defaults.CONNECTION = None


def test_object_connection_comes_before_the_context(fake: FakeDevice) -> None:
    own, ctx = fake.client(), fake.client()
    pool = Pool(name="web", connection=own)
    with ctx:
        assert pool._conn(None) is own
        assert Pool(name="x")._conn(None) is ctx


def test_package_exports() -> None:
    assert tandem.Client is Client and tandem.Pool is Pool and tandem.TandemError is TandemError
    assert tandem.sdk.connection is defaults
