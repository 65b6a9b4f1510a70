"""The partition rule: an object may use objects of its own partition and of `Common`, nothing else, whoever
writes it and however (one object, a pool's members, a batch); a refusal is a 422 naming the field."""

import pytest
from api_http import error_of, session


@pytest.fixture(scope="module")
def tenants(shared_device):
    """An admin and a manager of partition ref-a; ref-b holds a pool and a monitor, Common one of each."""
    admin = session(shared_device)
    for name in ("ref-a", "ref-b"):
        assert admin.post("/api/partitions", json={"name": name}).status_code == 201
    assert admin.post("/api/users", json={"name": "ref-mgr", "role": "manager", "partitions": ["ref-a"],
                                          "password": "ref-mgr-password"}).status_code == 201
    for partition in ("ref-b", "Common"):
        assert admin.post("/api/monitors", json={"partition": partition, "name": "ref-m", "type": "tcp"}
                          ).status_code == 201
        assert admin.post("/api/pools", json={"partition": partition, "name": "ref-p"}).status_code == 201
    return admin, session(shared_device, "ref-mgr", "ref-mgr-password")


def refused(response, target: str) -> None:
    assert response.status_code == 422, response.text
    assert error_of(response)["target"] == target
    assert "may use only objects of" in error_of(response)["message"]


def test_a_manager_cannot_use_another_partitions_objects(tenants):
    admin, manager = tenants
    refused(manager.post("/api/virtuals", json={"partition": "ref-a", "name": "v", "address": "192.0.2.41",
                                                "port": 80, "pool": "/ref-b/ref-p"}), "pool")
    refused(manager.post("/api/pools", json={"partition": "ref-a", "name": "p", "monitor": "/ref-b/ref-m",
                                             "members": [{"address": "10.0.0.1", "port": 80}]}), "monitor")
    assert manager.post("/api/pools", json={"partition": "ref-a", "name": "own"}).status_code == 201
    refused(manager.patch("/api/pools/ref-a/own", json={"monitor": "/ref-b/ref-m",
                                                        "members": [{"address": "10.0.0.2", "port": 80}]}), "monitor")
    assert admin.get("/api/pools/ref-a/own").json()["members"] == []
    refused(manager.post("/api/pools", json={"partition": "ref-a", "name": "p", "monitor": "/ref-b/absent"}),
            "monitor")  # a partition's contents are not disclosed by a "does not exist"
    for path in ("/api/virtuals/ref-a/v", "/api/pools/ref-a/p"):
        assert admin.get(path).status_code == 404
    assert admin.delete("/api/pools/ref-b/ref-p").status_code == 204  # nothing holds it
    assert admin.post("/api/pools", json={"partition": "ref-b", "name": "ref-p"}).status_code == 201


def test_a_batch_cannot_use_another_partitions_objects(tenants):
    admin, manager = tenants
    operations = [
        {"action": "create", "resource": "pools", "partition": "ref-a", "name": "bp", "body": {}},
        {"action": "create", "resource": "virtuals", "partition": "ref-a", "name": "bv",
         "body": {"address": "192.0.2.42", "port": 80, "pool": "/ref-b/ref-p"}},
        {"action": "replace", "resource": "pools", "partition": "ref-a", "name": "bq",
         "body": {"monitor": "/ref-b/ref-m"}}]
    refused(manager.post("/api/batch", json={"operations": operations}), "operations.1.body.pool")
    refused(manager.post("/api/batch", json={"operations": [operations[0], operations[2]]}),
            "operations.1.body.monitor")
    assert admin.get("/api/pools/ref-a/bp").status_code == 404


def test_the_rule_holds_for_an_admin_and_for_common(tenants):
    admin, _ = tenants
    refused(admin.post("/api/virtuals", json={"partition": "ref-a", "name": "av", "address": "192.0.2.43",
                                              "port": 80, "pool": "/ref-b/ref-p"}), "pool")
    assert admin.post("/api/pools", json={"partition": "ref-a", "name": "ap"}).status_code == 201
    refused(admin.post("/api/virtuals", json={"name": "cv", "address": "192.0.2.44", "port": 80,
                                              "pool": "/ref-a/ap"}), "pool")


def test_own_partition_and_common_objects_can_be_used(tenants):
    _, manager = tenants
    pool = manager.post("/api/pools", json={"partition": "ref-a", "name": "cp", "monitor": "/Common/ref-m",
                                            "members": [{"address": "10.0.0.3", "port": 80}]})
    assert pool.status_code == 201, pool.text
    member = manager.post("/api/pools/ref-a/cp/members", json={"address": "10.0.0.4", "port": 80})
    assert member.status_code == 201, member.text
    for name, pool_ref, address in (("cv", "/Common/ref-p", "192.0.2.45"), ("ov", "cp", "192.0.2.46"),
                                    ("sv", "/ref-a/cp", "192.0.2.47")):
        virtual = manager.post("/api/virtuals", json={"partition": "ref-a", "name": name, "address": address,
                                                      "port": 80, "pool": pool_ref, "enabled": False})
        assert virtual.status_code == 201, virtual.text
    batch = manager.post("/api/batch", json={"operations": [
        {"action": "update", "resource": "virtuals", "partition": "ref-a", "name": "ov",
         "body": {"pool": "/Common/ref-p"}}]})
    assert batch.status_code == 200, batch.text


def test_a_partition_assigned_to_a_manager_is_not_deleted_by_a_call_nor_a_batch(shared_device, tenants):
    admin, _ = tenants
    assert admin.post("/api/partitions", json={"name": "ref-c"}).status_code == 201
    assert admin.patch("/api/users/ref-mgr", json={"partitions": ["ref-a", "ref-c"]}).status_code == 200
    one = admin.delete("/api/partitions/ref-c")
    assert one.status_code == 409 and "assigned to user 'ref-mgr'" in error_of(one)["message"]
    batch = admin.post("/api/batch", json={"operations": [{"action": "delete", "resource": "partitions",
                                                           "name": "ref-c"}]})
    assert batch.status_code == 409 and "assigned to user 'ref-mgr'" in error_of(batch)["message"], batch.text
    assert admin.get("/api/partitions/ref-c").status_code == 200
    assert admin.patch("/api/users/ref-mgr", json={"partitions": ["ref-a"]}).status_code == 200
    assert admin.delete("/api/partitions/ref-c").status_code == 204
