"""`POST /api/batch` on a real device: operations in order, in one transaction, all or none."""

import httpx
import pytest
from api_http import error_of, session


@pytest.fixture
def api(device):
    return session(device)


def op(action: str, resource: str, name: str, body: dict | None = None, partition: str | None = None) -> dict:
    operation = {"action": action, "resource": resource, "name": name, "body": body or {}}
    if partition is not None:
        operation["partition"] = partition
    return operation


def last_commit(api: httpx.Client) -> int:
    return api.get("/api/device").json()["last_commit_id"]


def names(api: httpx.Client, kind: str) -> list[str]:
    return [r["name"] for r in api.get(f"/api/{kind}").json()["records"]]


STACK = [
    op("create", "partitions", "apps"),
    op("create", "monitors", "m", {"type": "tcp"}, "apps"),
    op("create", "pools", "p", {"monitor": "m", "members": [{"address": "10.0.0.1", "port": 80}]}, "apps"),
    op("create", "virtuals", "v", {"address": "192.0.2.1", "port": 443, "pool": "p"}, "apps"),
]
"""A partition, then a monitor, a pool using it and a virtual server using the pool: each refers to
what an earlier operation of the same batch created."""


def test_a_batch_creates_replaces_updates_and_deletes_in_order(api):
    assert api.post("/api/monitors", json={"name": "old", "type": "tcp"}).status_code == 201
    assert api.post("/api/pools", json={"name": "web", "lb_method": "least-connections", "description": "x",
                                        "members": [{"address": "10.0.0.1", "port": 80},
                                                    {"address": "10.0.0.2", "port": 80}]}).status_code == 201
    assert api.post("/api/virtuals", json={"name": "www", "address": "192.0.2.9", "port": 80}).status_code == 201
    response = api.post("/api/batch", json={"operations": [
        op("create", "monitors", "http", {"type": "http", "path": "/ok"}),
        op("replace", "pools", "web", {"monitor": "http", "members": [{"address": "10.0.0.3", "port": 80}]}),
        op("replace", "pools", "new", {"partition": "Common", "name": "new"}),
        op("update", "virtuals", "www", {"pool": "web", "port": 8080}),
        op("delete", "monitors", "old"),
    ]})
    assert response.status_code == 200, response.text
    assert response.json() == {"applied": 5, "commit": last_commit(api)}

    assert api.get("/api/monitors/Common/http").json()["path"] == "/ok"
    web = api.get("/api/pools/Common/web").json()
    # replace: the pool equals the body, defaults included (the old lb_method and description are gone)
    assert web == {"partition": "Common", "name": "web", "lb_method": "round-robin", "persistence": "none",
                   "monitor": "http", "tls": None,
                   "members": [{"address": "10.0.0.3", "port": 80, "state": "enabled", "weight": 1, "description": "",
                                "enabled": True}],
                   "description": ""}
    assert api.get("/api/pools/Common/new").status_code == 200
    virtual = api.get("/api/virtuals/Common/www").json()
    assert (virtual["pool"], virtual["port"], virtual["address"]) == ("web", 8080, "192.0.2.9")
    assert api.get("/api/monitors/Common/old").status_code == 404


def test_a_replace_that_changes_nothing_writes_nothing(api):
    body = {"lb_method": "least-connections", "members": [{"address": "10.0.0.1", "port": 80}]}
    assert api.post("/api/batch", json={"operations": [op("replace", "pools", "same", body)]}).status_code == 200
    before = last_commit(api)
    again = api.post("/api/batch", json={"operations": [op("replace", "pools", "same", body)]})
    assert again.status_code == 200 and again.json() == {"applied": 1, "commit": None}
    assert last_commit(api) == before


def test_references_are_checked_against_the_state_so_far_in_the_batch(api):
    created = api.post("/api/batch", json={"operations": STACK})
    assert created.status_code == 200, created.text
    assert api.get("/api/virtuals/apps/v").json()["pool"] == "p"
    before = last_commit(api)

    wrong_order = [op("delete", "pools", "p", partition="apps"), op("delete", "virtuals", "v", partition="apps")]
    refused = api.post("/api/batch", json={"operations": wrong_order})
    assert refused.status_code == 409, refused.text
    assert error_of(refused)["target"] == "operations.0.name"
    assert "/apps/v" in error_of(refused)["message"]
    assert last_commit(api) == before

    reverse = [op("delete", o["resource"], o["name"], partition=o.get("partition")) for o in reversed(STACK)]
    deleted = api.post("/api/batch", json={"operations": reverse})
    assert deleted.status_code == 200, deleted.text
    assert "apps" not in names(api, "partitions")


FAILURES = [
    (op("create", "virtuals", "bad", {"address": "192.0.2.2", "port": 70000}, "apps"), 422, "operations.4.body.port"),
    (op("create", "pools", "p", {}, "apps"), 409, "operations.4.name"),
    (op("update", "pools", "missing", {"lb_method": "least-connections"}, "apps"), 404, "operations.4"),
    (op("delete", "monitors", "m", partition="apps"), 409, "operations.4.name"),
    (op("create", "pools", "q", {"monitor": "nope"}, "apps"), 422, "operations.4.body.monitor"),
    (op("create", "pools", "q", {}, "nowhere"), 422, "operations.4.partition"),
    (op("update", "pools", "p", {"colour": "blue"}, "apps"), 422, "operations.4.body.colour"),
    (op("update", "virtuals", "v", {"name": "w"}, "apps"), 422, "operations.4.body.name"),
    (op("create", "virtuals", "w", {"address": "192.0.2.1", "port": 443}, "apps"), 409, "operations.4.body.port"),
]


@pytest.mark.parametrize(("failing", "status", "target"), FAILURES)
def test_a_failing_operation_applies_nothing_and_is_named(shared_device, failing, status, target):
    api = session(shared_device)
    before = last_commit(api)
    operations = [*STACK, failing, op("create", "monitors", "after", {"type": "tcp"})]
    response = api.post("/api/batch", json={"operations": operations})
    assert response.status_code == status, response.text
    error = error_of(response)
    assert error["target"] == target, error
    assert error["message"].startswith("operation 4 ("), error
    assert last_commit(api) == before
    assert "apps" not in names(api, "partitions")
    assert names(api, "monitors") == []


BAD_REQUESTS = [
    ({"operations": []}, "operations"),
    ({"operations": [op("create", "monitors", "m", {"type": "tcp"})] * 10_001}, "operations"),
    ({"operations": [op("upsert", "monitors", "m", {"type": "tcp"})]}, "operations.0.action"),
    ({"operations": [op("create", "users", "u", {"role": "admin"})]}, "operations.0.resource"),
    ({"operations": [op("create", "monitors", "a b", {"type": "tcp"})]}, "operations.0.name"),
    ({"operations": [op("create", "partitions", "p", partition="Common")]}, "operations.0.partition"),
    ({"operations": [op("delete", "monitors", "m", {"type": "tcp"})]}, "operations.0.body"),
    ({"operations": [op("create", "monitors", "m", {"name": "other", "type": "tcp"})]}, "operations.0.body.name"),
    ({"operations": [op("replace", "monitors", "m", {"partition": "apps", "type": "tcp"})]},
     "operations.0.body.partition"),
    ({"operations": [op("create", "monitors", "m", {"type": "icmp"})]}, "operations.0.body.type"),
    ({"operations": [{**op("create", "monitors", "m", {"type": "tcp"}), "extra": 1}]}, "operations.0.extra"),
]


@pytest.mark.parametrize(("body", "target"), BAD_REQUESTS)
def test_bad_batches_are_refused_naming_the_field(shared_device, body, target):
    api = session(shared_device)
    before = last_commit(api)
    response = api.post("/api/batch", json=body)
    assert response.status_code == 422, response.text
    assert error_of(response)["target"] == target, response.text
    assert last_commit(api) == before


def test_a_manager_batch_must_stay_in_its_partitions(api, device):
    for partition in ("tenant-a", "tenant-b"):
        assert api.post("/api/partitions", json={"name": partition}).status_code == 201
    assert api.post("/api/users", json={"name": "mgr", "role": "manager", "partitions": ["tenant-a"],
                                        "password": "mgr-password"}).status_code == 201
    assert api.post("/api/users", json={"name": "aud", "role": "auditor",
                                        "password": "aud-password"}).status_code == 201
    manager = session(device, "mgr", "mgr-password")
    before = last_commit(api)
    for operations, target in (
        ([op("create", "monitors", "m", {"type": "tcp"}, "tenant-a"),
          op("create", "monitors", "m", {"type": "tcp"}, "tenant-b")], "operations.1"),
        ([op("create", "monitors", "m", {"type": "tcp"})], "operations.0"),  # Common by default
        ([op("create", "partitions", "mine")], "operations.0"),
    ):
        response = manager.post("/api/batch", json={"operations": operations})
        assert response.status_code == 403, response.text
        assert error_of(response)["target"] == target
    auditor = session(device, "aud", "aud-password")
    assert auditor.post("/api/batch", json={"operations": [op("delete", "partitions", "tenant-b")]}).status_code == 403
    anonymous = httpx.post(f"{device.url}/api/batch", json={"operations": [op("delete", "partitions", "tenant-b")]},
                           verify=False)
    assert anonymous.status_code == 401
    assert last_commit(api) == before

    allowed = manager.post("/api/batch", json={"operations": [
        op("create", "monitors", "m", {"type": "tcp"}, "tenant-a"),
        op("create", "pools", "p", {"monitor": "m"}, "tenant-a")]})
    assert allowed.status_code == 200, allowed.text
    assert api.get("/api/pools/tenant-a/p").json()["monitor"] == "m"


def test_a_thousand_operations_in_one_batch(api):
    operations = []
    for i in range(250):
        operations += [op("create", "monitors", f"m{i}", {"type": "tcp"}),
                       op("create", "pools", f"p{i}", {"monitor": f"m{i}",
                                                       "members": [{"address": f"10.0.{i}.1", "port": 80}]}),
                       op("create", "virtuals", f"v{i}", {"address": f"10.1.{i}.1", "port": 80, "pool": f"p{i}"}),
                       op("update", "pools", f"p{i}", {"lb_method": "least-connections"})]
    response = api.post("/api/batch", json={"operations": operations})
    assert response.status_code == 200, response.text
    assert response.json() == {"applied": 1000, "commit": last_commit(api)}
    pools = api.get("/api/pools").json()["records"]
    assert len(pools) == 250 and {p["lb_method"] for p in pools} == {"least-connections"}
    assert api.get("/api/virtuals").json()["num_records"] == 250
