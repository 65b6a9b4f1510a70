"""Fenced batches on a real device: a batch whose token is older than one the device saw for its scope is
refused with 409 lease_lost and changes nothing; lease tokens grow with every change of a partition's leases."""

import pytest
from api_http import error_of, session


@pytest.fixture
def api(device):
    client = session(device)
    assert client.post("/api/partitions", json={"name": "k8s"}).status_code == 201
    return client


def pool(name: str, member: str) -> dict:
    return {"action": "replace", "resource": "pools", "partition": "k8s", "name": name,
            "body": {"members": [{"address": member, "port": 80}]}}


def fence(token: int, holder: str, *scope: str, epoch: str = "cluster-1") -> dict:
    return {"partition": "k8s", "epoch": epoch, "token": token, "holder": holder, "scope": list(scope)}


def members(api, name: str) -> list[str]:
    return [m["address"] for m in api.get(f"/api/pools/k8s/{name}").json()["members"]]


def test_an_older_token_is_refused_and_changes_nothing(api):
    first = api.post("/api/batch", json={"operations": [pool("web", "10.0.0.1")], "fence": fence(5, "a", "env:web")})
    assert first.status_code == 200, first.text
    newer = api.post("/api/batch", json={"operations": [pool("web", "10.0.0.2")], "fence": fence(9, "b", "env:web")})
    assert newer.status_code == 200, newer.text
    commit = api.get("/api/device").json()["last_commit_id"]

    stale = api.post("/api/batch", json={"operations": [pool("web", "10.0.0.1"), pool("api", "10.0.0.3")],
                                         "fence": fence(5, "a", "env:api", "env:web")})
    assert stale.status_code == 409, stale.text
    error = error_of(stale)
    assert error["code"] == "lease_lost" and error["target"] == "fence.token"
    assert "token 9 by b" in error["message"] and "a lost its lease" in error["message"]
    assert members(api, "web") == ["10.0.0.2"]
    assert api.get("/api/pools/k8s/api").status_code == 404  # nothing of the batch, its other scope neither
    assert api.get("/api/device").json()["last_commit_id"] == commit

    # the same token again, a newer one, a scope nobody wrote yet, and a batch without a fence pass
    for token, scope in ((9, "env:web"), (12, "env:web"), (1, "env:other")):
        answer = api.post("/api/batch", json={"operations": [pool("web", f"10.0.1.{token}")],
                                              "fence": fence(token, "b", scope)})
        assert answer.status_code == 200, answer.text
    assert api.post("/api/batch", json={"operations": [pool("web", "10.0.0.4")]}).status_code == 200
    refused = api.post("/api/batch", json={"operations": [pool("web", "10.0.0.5")], "fence": fence(9, "b", "env:web")})
    assert refused.status_code == 409 and members(api, "web") == ["10.0.0.4"]

    # another lease store (a new Kubernetes cluster): its tokens start afresh and replace the old epoch's
    moved = api.post("/api/batch", json={"operations": [pool("web", "10.0.0.6")],
                                         "fence": fence(2, "c", "env:web", epoch="cluster-2")})
    assert moved.status_code == 200, moved.text
    late = api.post("/api/batch", json={"operations": [pool("web", "10.0.0.7")], "fence": fence(1, "c", "env:web",
                                                                                                 epoch="cluster-2")})
    assert late.status_code == 409 and members(api, "web") == ["10.0.0.6"]


@pytest.mark.parametrize(("fenced", "target"), [
    (fence(-1, "a", "env:web"), "fence.token"),
    (fence(1, "a"), "fence.scope"),
    (fence(1, "", "env:web"), "fence.holder"),
    ({key: value for key, value in fence(1, "a", "env:web").items() if key != "epoch"}, "fence.epoch"),
    (fence(1, "a", "bad\nname"), "fence.scope.0"),
    ({**fence(1, "a", "env:web"), "partition": "Common"}, "operations.0"),  # the operation outside it
    ({**fence(1, "a", "env:web"), "extra": 1}, "fence.extra"),
])
def test_bad_fences_are_refused_naming_the_field(api, fenced, target):
    commit = api.get("/api/device").json()["last_commit_id"]
    response = api.post("/api/batch", json={"operations": [pool("web", "10.0.0.1")], "fence": fenced})
    assert response.status_code == 422, response.text
    assert error_of(response)["target"] == target, response.text
    assert api.get("/api/device").json()["last_commit_id"] == commit


def test_lease_tokens_grow_with_every_change_of_the_partitions_leases(api):
    def acquire(name: str, holder: str) -> dict:
        answer = api.post(f"/api/leases/k8s/{name}/acquire", json={"holder": holder, "ttl": 30})
        assert answer.status_code == 200, answer.text
        return answer.json()

    a1 = acquire("agent-a", "a")
    b1 = acquire("agent-b", "b")
    a2 = acquire("agent-a", "a")  # a renewal too
    released = api.post("/api/leases/k8s/agent-b/release", json={"holder": "b"}).json()
    assert a1["token"] < b1["token"] < a2["token"] < released["token"]
    assert [lease["token"] for lease in api.get("/api/leases", params={"partition": "k8s"}).json()["records"]] == [
        a2["token"], released["token"]]
