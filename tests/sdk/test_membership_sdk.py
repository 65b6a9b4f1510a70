"""`client.cluster` (the membership view) against real devices: two `tandem serve` processes on loopback
formed into a sync-failover group with ClusterManager, a traffic group, real heartbeats. No mocks."""

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devices import RunningDevice
from tandem import Client, ClusterInfo, ClusterManager, ClusterMember, Failover, TandemError, TrafficGroup, User

TG = "tg-sdk"
TIMEOUT = 10.0


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Client]]:
    """dev-1 and dev-2 in sync-failover group `dg` with traffic group `tg-sdk`; a pinned admin Client for each."""
    base: Path = tmp_path_factory.mktemp("membership-sdk")
    devices = [RunningDevice(name=name, data_dir=base / name) for name in ("dev-1", "dev-2")]
    clients: list[Client] = []
    try:
        for device in devices:
            device.start()
        clients = [device.client() for device in devices]
        ClusterManager().create(devices=clients, device_group_name="dg", timeout=30)
        TrafficGroup(name=TG, device_group="dg", ha_order=["dev-1", "dev-2"]).post(connection=clients[0])
        Failover(clients[0]).wait_active(TG, "dev-1", timeout=TIMEOUT)
        yield clients
    finally:
        for client in clients:
            client.close()
        for device in devices:
            device.stop()


def eventually(check: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + TIMEOUT
    while not (last := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {TIMEOUT} s waiting for {what}; last: {last!r}")
        time.sleep(0.05)
    return last


def statuses(client: Client) -> dict[str, str]:
    return {m.server_name: m.status for m in client.cluster.get().members.all()}


def test_the_cluster_object_has_the_lxd_attributes(pair):
    one, two = pair
    info = one.cluster.get()
    assert isinstance(info, ClusterInfo)
    assert info.server_name == "dev-1" and info.enabled is True
    assert info.uuid == one.trust()["domain_id"] == two.cluster.get().uuid
    assert info.cluster_name == f"cluster-{info.uuid[:8]}"
    assert [item["key"] for item in info.member_config] == ["url", "username", "password", "fingerprint"]
    assert two.cluster.get().server_name == "dev-2"


def test_members_all_and_get(pair):
    one, _ = pair
    eventually(lambda: statuses(one) == {"dev-1": "Online", "dev-2": "Online"}, "both members Online")
    members = one.cluster.get().members.all()
    assert all(isinstance(m, ClusterMember) for m in members)
    assert [(m.server_name, m.url, m.database, m.message) for m in members] == [
        ("dev-1", one.url, True, "Fully operational"), ("dev-2", pair[1].url, True, "Fully operational")]
    assert members[0].roles == ["database", "failover", "active"] and members[1].roles == ["database", "failover"]
    two = one.cluster.get().members.get("dev-2")
    assert two.to_dict() == members[1].to_dict()
    assert "server_name='dev-2'" in repr(two)


def test_a_missing_member_is_not_found(pair):
    with pytest.raises(TandemError) as error:
        pair[0].cluster.get().members.get("dev-9")
    assert error.value.status_code == 404 and error.value.code == "not_found" and "dev-9" in error.value.message


def test_evacuate_and_restore(pair):
    one, two = pair
    Failover(one).wait_active(TG, "dev-1", timeout=TIMEOUT)
    member = two.cluster.get().members.get("dev-1")  # any member may evacuate any member
    assert member.evacuate() is member
    assert member.status == "Evacuated" and member.message == "evacuated: its traffic groups are served by others"
    Failover(one).wait_active(TG, "dev-2", timeout=TIMEOUT)
    eventually(lambda: statuses(one)["dev-1"] == "Evacuated", "dev-1 to see itself Evacuated")
    assert member.evacuate().status == "Evacuated"  # idempotent
    assert member.restore().status == "Online"
    eventually(lambda: statuses(one)["dev-1"] == "Online", "dev-1 to see itself Online again")
    eventually(lambda: Failover(one).traffic_group(TG)["state"] == "standby", "dev-1 standby once restored")
    assert Failover(one).active_device(TG) == "dev-2"


def test_rename_and_a_read_only_user(pair):
    one, two = pair
    assert one.cluster.rename("site-b").cluster_name == "site-b"
    eventually(lambda: two.cluster.get().cluster_name == "site-b", "dev-2 to take the name")
    User(name="watcher", role="auditor", password="watcher-pass").post(connection=one)
    auditor = Client(one.url, "watcher", "watcher-pass", fingerprint=one.fingerprint)
    try:
        member = auditor.cluster.get().members.get("dev-2")
        with pytest.raises(TandemError) as error:
            member.evacuate()
        assert error.value.status_code == 403 and error.value.code == "forbidden"
        with pytest.raises(TandemError):
            auditor.cluster.rename("mine")
    finally:
        auditor.close()
        User(name="watcher").delete(connection=one)
    assert statuses(one)["dev-2"] == "Online"
