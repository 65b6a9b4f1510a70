"""ClusterManager against real devices: `tandem serve` processes on loopback that trust one another
over real mutual TLS (the `device_factory` fixture of tests/conftest.py). No mocks."""

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tandem import Client, Cluster, ClusterManager, DeviceGroup, Pool, TandemError, TrustedDevice
from tandem.models.fingerprints import format_fingerprint
from waiting import not_found, wait_until

TIMEOUT = 30.0
REPLICATION = 10.0
"""How long a write may take to reach another member, at most (it takes well under a second)."""


@pytest.fixture
def start(device_factory: Callable[..., Any]) -> Iterator[Callable[[int], tuple[list[Any], list[Client]]]]:
    """`start(n)`: n fresh devices dev-1..dev-n and a pinned admin Client for each (closed at the end)."""
    opened: list[Client] = []

    def factory(count: int) -> tuple[list[Any], list[Client]]:
        devices = [device_factory(f"dev-{i}") for i in range(1, count + 1)]
        clients = [device.client() for device in devices]
        opened.extend(clients)
        return devices, clients

    yield factory
    for client in opened:
        client.close()


def trusted_names(client: Client) -> set[str]:
    return {device["name"] for device in client.trust()["devices"]}


def group_names(client: Client) -> set[str]:
    return {group.name for group in DeviceGroup.get_collection(connection=client)}


def assert_in_sync(clients: list[Client], group: str, members: set[str]) -> None:
    for client in clients:
        status = DeviceGroup(name=group).status(connection=client)
        assert status["status"] == "In Sync", status
        assert {m["name"] for m in status["members"]} == members
        assert all(m["status"] == "In Sync" and m["connected"] for m in status["members"]), status


def assert_alone(clients: list[Client]) -> None:
    """Each device trusts only itself, in a domain of its own."""
    domains = set()
    for client in clients:
        trust = client.trust()
        assert [d["name"] for d in trust["devices"]] == [client.device()["name"]], trust
        domains.add(trust["domain_id"])
    assert len(domains) == len(clients)


def test_create_replicates_writes_and_teardown_leaves_each_device_alone(start: Any) -> None:
    _, clients = start(2)
    lines: list[str] = []
    manager = ClusterManager()
    cluster = manager.create(devices=clients, device_group_name="dg", device_group_type="sync-failover",
                             device_group_partition="Common", timeout=TIMEOUT, progress=lines.append)
    assert cluster == Cluster("dg", "sync-failover", "Common", clients)
    assert manager.cluster is cluster and cluster.devices is clients
    assert any("adds dev-2" in line for line in lines), lines
    assert lines[-1] == "cluster dg is In Sync on 2 device(s)"

    # one trust domain, one group, seen the same from both devices
    assert trusted_names(clients[0]) == trusted_names(clients[1]) == {"dev-1", "dev-2"}
    assert clients[0].trust()["domain_id"] == clients[1].trust()["domain_id"]
    for client in clients:
        group = DeviceGroup(name="dg").get(connection=client)
        assert (group.type, sorted(group.members), group.partitions) == ("sync-failover", ["dev-1", "dev-2"],
                                                                         ["Common"])
    assert_in_sync(clients, "dg", {"dev-1", "dev-2"})
    records = {d.name: d for d in TrustedDevice.get_collection(connection=clients[0])}
    assert records["dev-1"].self is True and records["dev-2"].self is False
    assert records["dev-2"].fingerprint.replace(":", "") == clients[1].fingerprint

    # a write on either device appears on the other
    Pool(name="web", members=[{"address": "10.0.0.1", "port": 80}], connection=clients[0]).post()
    replica = wait_until(lambda: Pool(name="web").get(connection=clients[1]),
                         REPLICATION, "the pool on dev-2", retry=not_found)
    assert [(m["address"], m["port"]) for m in replica.members] == [("10.0.0.1", 80)]
    Pool(name="api", connection=clients[1]).post()
    wait_until(lambda: Pool(name="api").get(connection=clients[0]), REPLICATION, "the pool on dev-1", retry=not_found)
    replica.lb_method = "least-connections"
    replica.patch(connection=clients[1])
    wait_until(lambda: Pool(name="web").get(connection=clients[0]).lb_method == "least-connections",
               REPLICATION, "the change on dev-1", retry=not_found)

    lines.clear()
    manager.teardown(timeout=TIMEOUT, progress=lines.append)
    assert manager.cluster is None
    assert lines[-1] == "cluster dg is torn down"
    assert_alone(clients)
    assert group_names(clients[0]) == group_names(clients[1]) == set()
    # each keeps its configuration, and writes no longer travel
    assert Pool(name="web").get(connection=clients[1]).lb_method == "least-connections"
    Pool(name="after", connection=clients[0]).post()
    time.sleep(1)
    with pytest.raises(TandemError) as caught:
        Pool(name="after").get(connection=clients[1])
    assert caught.value.status_code == 404


def test_manage_existing_cluster(start: Any) -> None:
    devices, clients = start(2)
    created = ClusterManager()
    created.create(devices=clients, device_group_name="dg", timeout=TIMEOUT)

    manager = ClusterManager(devices=clients, device_group_name="dg", device_group_type="sync-failover",
                             device_group_partition="Common")
    assert manager.cluster == Cluster("dg", "sync-failover", "Common", clients)
    assert manager.cluster.devices is clients

    # other Client objects, another root: the same cluster
    others = [device.client() for device in reversed(devices)]
    try:
        assert ClusterManager(devices=others, device_group_name="dg").cluster.devices is others
    finally:
        for client in others:
            client.close()

    with pytest.raises(TandemError) as caught:
        ClusterManager(devices=clients, device_group_name="dg", device_group_type="sync-only")
    assert caught.value.code == "cluster_mismatch"
    assert "is of type sync-failover, not sync-only" in caught.value.message
    with pytest.raises(TandemError, match="not tenant1"):
        ClusterManager(devices=clients, device_group_name="dg", device_group_partition="tenant1")
    with pytest.raises(TandemError, match="dev-1 has no device group 'other'"):
        ClusterManager(devices=clients, device_group_name="other")
    with pytest.raises(TandemError, match=r"members not given: \[dev-2\]"):
        ClusterManager(devices=clients[:1], device_group_name="dg")

    with pytest.raises(TandemError) as caught:
        ClusterManager().create(devices=clients, device_group_name="dg")
    assert (caught.value.status_code, caught.value.message) == (409, "device group 'dg' already exists on dev-1")

    manager.teardown(timeout=TIMEOUT)
    assert_alone(clients)
    with pytest.raises(TandemError, match="has no device group 'dg'"):
        ClusterManager(devices=clients, device_group_name="dg")


def test_grow_and_shrink(start: Any) -> None:
    _, clients = start(3)
    first_two, third = clients[:2], clients[2]
    manager = ClusterManager()
    manager.create(devices=first_two, device_group_name="dg", timeout=TIMEOUT)
    Pool(name="before", connection=clients[0]).post()
    wait_until(lambda: Pool(name="before").get(connection=clients[1]),
               REPLICATION, "the pool on dev-2", retry=not_found)

    lines: list[str] = []
    cluster = manager.add_devices(third, timeout=TIMEOUT, progress=lines.append)
    assert cluster.devices == clients and manager.cluster is cluster
    assert any("adds dev-3" in line for line in lines), lines
    assert trusted_names(third) == {"dev-1", "dev-2", "dev-3"}
    assert_in_sync(clients, "dg", {"dev-1", "dev-2", "dev-3"})
    # the new member got the group's configuration (its initial sync), and takes part in it
    assert Pool(name="before").get(connection=third).name == "before"
    Pool(name="from-3", connection=third).post()
    wait_until(lambda: Pool(name="from-3").get(connection=clients[0]),
               REPLICATION, "dev-3's pool on dev-1", retry=not_found)
    assert ClusterManager(devices=clients, device_group_name="dg").cluster.devices is clients

    with pytest.raises(TandemError, match="dev-1 is the root"):
        manager.remove_devices(clients[0])
    lines.clear()
    cluster = manager.remove_devices(third, timeout=TIMEOUT, progress=lines.append)
    assert cluster.devices == first_two
    assert any("dev-3 is alone" in line for line in lines), lines
    assert_alone([third])
    assert trusted_names(clients[0]) == trusted_names(clients[1]) == {"dev-1", "dev-2"}
    assert sorted(DeviceGroup(name="dg").get(connection=clients[1]).members) == ["dev-1", "dev-2"]
    assert_in_sync(first_two, "dg", {"dev-1", "dev-2"})
    # dev-3 keeps its configuration; new writes no longer reach it
    assert Pool(name="from-3").get(connection=third).name == "from-3"
    Pool(name="after", connection=clients[0]).post()
    wait_until(lambda: Pool(name="after").get(connection=clients[1]), REPLICATION, "the pool on dev-2", retry=not_found)
    with pytest.raises(TandemError) as caught:
        Pool(name="after").get(connection=third)
    assert caught.value.status_code == 404

    manager.teardown(timeout=TIMEOUT)
    assert_alone(clients)


def test_a_removed_device_can_come_back(start: Any) -> None:
    _, clients = start(3)
    manager = ClusterManager()
    manager.create(devices=clients, device_group_name="dg", timeout=TIMEOUT)
    for turn in range(3):
        manager.remove_devices(clients[2], timeout=TIMEOUT)
        assert_alone([clients[2]])
        Pool(name=f"while-away-{turn}", connection=clients[0]).post()
        manager.add_devices(clients[2], timeout=TIMEOUT)
        assert manager.cluster is not None and manager.cluster.devices == clients
        wait_until(lambda turn=turn: Pool(name=f"while-away-{turn}").get(connection=clients[2]),
                   REPLICATION, "the pool written while dev-3 was away", retry=not_found)
        # the links stay up: the group is still In Sync a moment later
        time.sleep(1)
        assert_in_sync(clients, "dg", {"dev-1", "dev-2", "dev-3"})
    manager.teardown(timeout=TIMEOUT)
    assert_alone(clients)


def test_create_with_devices_already_trusted(start: Any) -> None:
    _, clients = start(2)
    root, other = clients
    TrustedDevice.add(other.url, other.username, other.password, format_fingerprint(other.fingerprint),
                      connection=root)
    lines: list[str] = []
    manager = ClusterManager()
    manager.create(devices=clients, device_group_name="dg", device_group_type="sync-only", timeout=TIMEOUT,
                   progress=lines.append)
    assert "dev-2 is already trusted by dev-1" in lines
    assert DeviceGroup(name="dg").get(connection=other).type == "sync-only"
    with pytest.raises(TandemError) as caught:
        manager.create(devices=clients, device_group_name="again")
    assert caught.value.code == "invalid_state"
    manager.teardown(timeout=TIMEOUT)
    assert_alone(clients)
    # a torn-down cluster can be formed again, from the other side
    again = ClusterManager()
    again.create(devices=[other, root], device_group_name="dg2", timeout=TIMEOUT)
    assert_in_sync(clients, "dg2", {"dev-1", "dev-2"})
    again.teardown(timeout=TIMEOUT)


def test_a_cluster_of_one_device(start: Any) -> None:
    _, clients = start(1)
    manager = ClusterManager()
    manager.create(devices=clients, device_group_name="solo", timeout=TIMEOUT)
    assert_in_sync(clients, "solo", {"dev-1"})
    manager.teardown(timeout=TIMEOUT)
    assert group_names(clients[0]) == set()


def test_wrong_password_is_refused_before_anything_changes(start: Any) -> None:
    devices, clients = start(2)
    wrong = Client(devices[1].url, "admin", "not-the-password", fingerprint=devices[1].fingerprint)
    try:
        with pytest.raises(TandemError) as caught:
            ClusterManager().create(devices=[clients[0], wrong], device_group_name="dg", timeout=TIMEOUT)
        assert caught.value.status_code == 401
    finally:
        wrong.close()
    assert trusted_names(clients[0]) == {"dev-1"}
    assert group_names(clients[0]) == set()
