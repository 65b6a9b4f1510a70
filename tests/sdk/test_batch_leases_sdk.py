"""`client.batch` and `client.leases` against a real device."""

import pytest

from tandem import TandemError


def test_batch_applies_all_or_raises_naming_the_operation(device):
    client = device.client()
    result = client.batch([
        {"action": "create", "resource": "monitors", "name": "m", "body": {"type": "tcp"}},
        {"action": "create", "resource": "pools", "partition": "Common", "name": "p", "body": {"monitor": "m"}},
    ])
    assert result == {"applied": 2, "commit": client.device()["last_commit_id"]}
    with pytest.raises(TandemError) as failed:
        client.batch([{"action": "delete", "resource": "pools", "name": "p"},
                      {"action": "update", "resource": "pools", "name": "gone", "body": {}}])
    assert (failed.value.status_code, failed.value.code, failed.value.target) == (404, "not_found", "operations.1")
    assert client.request("GET", "/api/pools/Common/p")["monitor"] == "m"


def test_leases(device):
    client = device.client()
    lease = client.leases.acquire("Common", "k8s", "agent-a", 30, data={"hosts": 1}, version=0)
    assert (lease["holder"], lease["version"], lease["data"]) == ("agent-a", 1, {"hosts": 1})
    assert client.leases.acquire("Common", "k8s", "agent-a", 30)["version"] == 2
    with pytest.raises(TandemError) as held:
        client.leases.acquire("Common", "k8s", "agent-b", 30)
    assert held.value.code == "conflict" and "held by agent-a" in held.value.message
    with pytest.raises(TandemError) as stale:
        client.leases.acquire("Common", "k8s", "agent-a", 30, version=1)
    assert stale.value.code == "conflict"
    assert client.leases.release("Common", "k8s", "agent-a")["expired"] is True
    assert [lease["name"] for lease in client.leases.all("Common")] == ["k8s"]
    assert client.leases.get("Common", "k8s")["version"] == 3
    client.leases.delete("Common", "k8s")
    assert client.leases.all() == []
