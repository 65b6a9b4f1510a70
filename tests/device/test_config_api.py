"""Configuration objects over HTTPS: CRUD, references, conventions and bad input, on a real device."""

import pytest
from api_http import error_of, session


@pytest.fixture
def api(device):
    return session(device)


def test_crud_of_every_object_and_references(api):
    assert api.post("/api/partitions", json={"name": "apps", "description": "tenant"}).status_code == 201
    monitor = api.post("/api/monitors", json={"partition": "apps", "name": "http-ok", "type": "http",
                                              "path": "/health", "expected_status": 204})
    assert monitor.status_code == 201 and monitor.headers["location"] == "/api/monitors/apps/http-ok"
    pool = api.post("/api/pools", json={"partition": "apps", "name": "web", "monitor": "http-ok",
                                        "lb_method": "least-connections",
                                        "members": [{"address": "10.0.0.1", "port": 80},
                                                    {"address": "2001:DB8::1", "port": 8080, "enabled": False}]})
    assert pool.status_code == 201, pool.text
    assert pool.json()["members"][1]["address"] == "2001:db8::1"  # stored normalized
    virtual = api.post("/api/virtuals", json={"partition": "apps", "name": "www", "address": "192.0.2.10",
                                              "port": 443, "pool": "web", "traffic_group": "tg-1"})
    assert virtual.status_code == 201, virtual.text
    assert api.get("/api/virtuals/apps/www").json() == virtual.json()

    member = api.get("/api/pools/apps/web/members/[2001:db8::1]:8080")
    assert member.status_code == 200 and member.json()["enabled"] is False
    assert api.patch("/api/pools/apps/web/members/[2001:db8::1]:8080", json={"enabled": True}).json()["enabled"]
    assert api.delete("/api/pools/apps/web/members/10.0.0.1:80").status_code == 204
    assert [m["port"] for m in api.get("/api/pools/apps/web").json()["members"]] == [8080]
    replaced = api.patch("/api/pools/apps/web", json={"members": [{"address": "10.0.0.9", "port": 81}]})
    assert [(m["address"], m["port"]) for m in replaced.json()["members"]] == [("10.0.0.9", 81)]

    assert api.patch("/api/virtuals/apps/www", json={"enabled": False}).json()["enabled"] is False
    in_use = api.delete("/api/pools/apps/web")
    assert in_use.status_code == 409 and "/apps/www" in error_of(in_use)["message"]
    assert api.delete("/api/monitors/apps/http-ok").status_code == 409
    assert api.delete("/api/partitions/apps").status_code == 409
    assert api.delete("/api/virtuals/apps/www").status_code == 204
    assert api.delete("/api/pools/apps/web").status_code == 204
    assert api.get("/api/pools/apps/web/members").status_code == 404
    assert api.delete("/api/monitors/apps/http-ok").status_code == 204
    assert api.delete("/api/partitions/apps").status_code == 204
    assert api.get("/api/partitions/apps").status_code == 404
    assert api.delete("/api/partitions/Common").status_code == 409


def test_cross_partition_reference(api):
    assert api.post("/api/partitions", json={"name": "apps"}).status_code == 201
    assert api.post("/api/monitors", json={"name": "tcp", "type": "tcp"}).status_code == 201
    pool = api.post("/api/pools", json={"partition": "apps", "name": "p", "monitor": "/Common/tcp"})
    assert pool.status_code == 201
    assert api.post("/api/pools", json={"partition": "apps", "name": "q", "monitor": "tcp"}).status_code == 422
    assert api.delete("/api/monitors/Common/tcp").status_code == 409


BAD_CREATES = [
    ("/api/virtuals", {"name": "v", "address": "10.0.0.300", "port": 80}, 422, "address"),
    ("/api/virtuals", {"name": "v", "address": "10.0.0.3", "port": 70000}, 422, "port"),
    ("/api/virtuals", {"name": "v", "address": "10.0.0.3", "port": "80"}, 422, "port"),
    ("/api/virtuals", {"name": "v", "address": "10.0.0.3", "port": 80, "pool": "missing"}, 422, "pool"),
    ("/api/virtuals", {"name": "v", "address": "10.0.0.3", "port": 80, "protocol": "sctp"}, 422, "protocol"),
    ("/api/virtuals", {"name": "../etc", "address": "10.0.0.3", "port": 80}, 422, "name"),
    ("/api/virtuals", {"name": "v", "partition": "nope", "address": "10.0.0.3", "port": 80}, 422, "partition"),
    ("/api/pools", {"name": "p", "lb_method": "fastest"}, 422, "lb_method"),
    ("/api/pools", {"name": "p", "colour": "blue"}, 422, "colour"),
    ("/api/pools", {"name": "p", "members": [{"address": "10.0.0.1", "port": 80}] * 2}, 422, "members.1"),
    ("/api/pools", {"name": "p", "members": [{"address": "x", "port": 80}]}, 422, "members.0.address"),
    ("/api/pools", {"name": "a b"}, 422, "name"),
    ("/api/pools", {"name": "x" * 64}, 422, "name"),
    ("/api/pools", {}, 422, "name"),
    ("/api/monitors", {"name": "m", "type": "tcp", "expected_status": 200}, 422, "expected_status"),
    ("/api/monitors", {"name": "m", "type": "icmp"}, 422, "type"),
    ("/api/monitors", {"name": "m", "type": "http", "path": "no-slash"}, 422, "path"),
    ("/api/partitions", {"name": "a/b"}, 422, "name"),
]


@pytest.mark.parametrize(("path", "body", "status", "target"), BAD_CREATES)
def test_bad_input_is_refused_naming_the_field_and_changes_nothing(shared_device, path, body, status, target):
    api = session(shared_device)
    before = api.get("/api/device").json()["last_commit_id"]
    response = api.post(path, json=body)
    assert response.status_code == status, response.text
    assert error_of(response)["target"] == target, response.text
    assert api.get("/api/device").json()["last_commit_id"] == before


def test_malformed_requests(shared_device):
    api = session(shared_device)
    before = api.get("/api/device").json()["last_commit_id"]
    headers = {"content-type": "application/json"}
    cases = [
        (api.post("/api/pools", content=b'{"name": "x",', headers=headers), 400, "bad_request"),
        (api.post("/api/pools", content=b"[1, 2]", headers=headers), 400, "bad_request"),
        (api.post("/api/pools", content=b"name=x", headers={"content-type": "text/plain"}), 415,
         "unsupported_media_type"),
        (api.post("/api/pools", content=b'{"name": "' + b"a" * (2 << 20) + b'"}', headers=headers), 413,
         "payload_too_large"),
        (api.patch("/api/pools/Common/nothing", json={"lb_method": "round-robin"}), 404, "not_found"),
        (api.get("/api/pools/Common/..%2F..%2Fetc"), 404, "not_found"),
        (api.get("/api/pools/Common/%2e%2e"), 404, "not_found"),
        (api.get("/api/pools?limit=0"), 400, "bad_request"),
        (api.get("/api/pools?colour=blue"), 400, "bad_request"),
        (api.get("/api/pools?fields=colour"), 400, "bad_request"),
        (api.get("/api/pools?after=garbage"), 400, "bad_request"),
        (api.put("/api/pools/Common/x", json={}), 405, "method_not_allowed"),
        (api.get("/api/no-such-thing"), 404, "not_found"),
        (api.get("/api/pools/Common/web/members/not-a-member"), 404, "not_found"),
    ]
    for response, status, code in cases:
        assert response.status_code == status, (response.request.url, response.text)
        assert error_of(response)["code"] == code
    assert api.get("/api/device").json()["last_commit_id"] == before
    assert api.get("/api/health").status_code == 200


def test_duplicates_and_destination_conflicts(api):
    assert api.post("/api/pools", json={"name": "p"}).status_code == 201
    duplicate = api.post("/api/pools", json={"name": "p"})
    assert duplicate.status_code == 409 and error_of(duplicate)["target"] == "name"
    assert api.post("/api/virtuals", json={"name": "a", "address": "192.0.2.1", "port": 80}).status_code == 201
    taken = api.post("/api/virtuals", json={"name": "b", "address": "192.0.2.1", "port": 80})
    assert taken.status_code == 409 and "/Common/a" in error_of(taken)["message"]
    assert api.post("/api/virtuals", json={"name": "b", "address": "192.0.2.1", "port": 81}).status_code == 201
    moved = api.patch("/api/virtuals/Common/b", json={"port": 80})
    assert moved.status_code == 409
    rename = api.patch("/api/virtuals/Common/b", json={"name": "c"})
    assert rename.status_code == 422 and error_of(rename)["target"] == "name"
    assert api.patch("/api/virtuals/Common/b", json={"address": None}).status_code == 422
    assert api.get("/api/virtuals/Common/b").json()["port"] == 81
    assert api.post("/api/pools/Common/p/members", json={"address": "10.0.0.1", "port": 80}).status_code == 201
    assert api.post("/api/pools/Common/p/members", json={"address": "10.0.0.1", "port": 80}).status_code == 409


def test_collections_fields_filters_and_paging(api):
    for i in range(25):
        body = {"name": f"pool-{i:02}", "lb_method": "least-connections" if i % 2 else "round-robin"}
        assert api.post("/api/pools", json=body).status_code == 201
    page = api.get("/api/pools", params={"limit": 10, "fields": "lb_method"}).json()
    assert page["num_records"] == 10 and set(page["records"][0]) == {"partition", "name", "lb_method"}
    names = [r["name"] for r in page["records"]]
    while page["next"]:
        page = api.get(page["next"]).json()
        names += [r["name"] for r in page["records"]]
    assert names == [f"pool-{i:02}" for i in range(25)]
    odd = api.get("/api/pools", params={"lb_method": "least-connections"}).json()["records"]
    assert [r["name"] for r in odd] == [f"pool-{i:02}" for i in range(1, 25, 2)]
    glob = api.get("/api/pools", params={"name": "pool-1?"}).json()["records"]
    assert len(glob) == 10


def test_bulk_changes_are_jobs_and_atomic(api):
    for i in range(5):
        assert api.post("/api/pools", json={"name": f"bulk-{i}"}).status_code == 201
    assert api.post("/api/virtuals", json={"name": "v", "address": "192.0.2.5", "port": 80,
                                           "pool": "bulk-3"}).status_code == 201
    refused = api.delete("/api/pools")
    assert refused.status_code == 400 and error_of(refused)["target"] == "query"
    started = api.patch("/api/pools", params={"name": "bulk-*"}, json={"lb_method": "least-connections"})
    assert started.status_code == 202 and started.headers["location"] == f"/api/jobs/{started.json()['id']}"
    job = api.get(started.headers["location"], params={"wait": 10}).json()
    assert job["state"] == "succeeded" and job["result"] == {"count": 5}
    # one pool is still used by a virtual server: the delete fails as a whole and nothing is deleted
    started = api.delete("/api/pools", params={"name": "bulk-*"})
    job = api.get(started.headers["location"], params={"wait": 10}).json()
    assert job["state"] == "failed" and job["error"]["code"] == "conflict"
    assert len(api.get("/api/pools", params={"name": "bulk-*"}).json()["records"]) == 5
    bad = api.patch("/api/pools", params={"name": "bulk-*"}, json={"lb_method": "fastest"})
    assert bad.status_code == 422
    assert api.get("/api/jobs/nope").status_code == 404


def test_openapi_and_device(api, device):
    spec = api.get("/api/openapi.json").json()
    assert "/api/pools/{partition}/{name}" in spec["paths"] and "/api/auth/login" in spec["paths"]
    info = api.get("/api/device").json()
    assert info["name"] == "dev-1" and info["fingerprint"] == device.fingerprint
    assert info["management_url"] == device.url
