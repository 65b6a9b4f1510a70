"""`client.cluster` (the membership view) against real devices: two `tandem serve` processes on loopback
formed into a sync-failover group with ClusterManager, a traffic group, real heartbeats. No mocks."""


import pytest

from tandem import Client, ClusterInfo, ClusterMember, Failover, TandemError, TrafficGroup, User
from waiting import wait_until

TG = "tg-sdk"
TIMEOUT = 10.0


@pytest.fixture(scope="module")
def tg_pair(pair: list[Client]) -> list[Client]:
    """The pair (conftest) with traffic group `tg-sdk`, active on dev-1."""
    TrafficGroup(name=TG, device_group="dg", ha_order=["dev-1", "dev-2"]).post(connection=pair[0])
    Failover(pair[0]).wait_active(TG, "dev-1", timeout=TIMEOUT)
    return pair


def statuses(client: Client) -> dict[str, str]:
    return {m.server_name: m.status for m in client.cluster.get().members.all()}


def test_the_cluster_object_has_the_lxd_attributes(tg_pair):
    one, two = tg_pair
    info = one.cluster.get()
    assert isinstance(info, ClusterInfo)
    assert info.server_name == "dev-1" and info.enabled is True
    assert info.uuid == one.trust()["domain_id"] == two.cluster.get().uuid
    assert info.cluster_name == f"cluster-{info.uuid[:8]}"
    assert [item["key"] for item in info.member_config] == ["url", "username", "password", "fingerprint"]
    assert two.cluster.get().server_name == "dev-2"


def test_members_all_and_get(tg_pair):
    one, _ = tg_pair
    wait_until(lambda: statuses(one) == {"dev-1": "Online", "dev-2": "Online"},
               TIMEOUT, "both members Online", retry=())
    members = one.cluster.get().members.all()
    assert all(isinstance(m, ClusterMember) for m in members)
    assert [(m.server_name, m.url, m.database, m.message) for m in members] == [
        ("dev-1", one.url, True, "Fully operational"), ("dev-2", tg_pair[1].url, True, "Fully operational")]
    assert members[0].roles == ["database", "failover", "active"] and members[1].roles == ["database", "failover"]
    two = one.cluster.get().members.get("dev-2")
    assert two.to_dict() == members[1].to_dict()
    assert "server_name='dev-2'" in repr(two)


def test_a_missing_member_is_not_found(tg_pair):
    with pytest.raises(TandemError) as error:
        tg_pair[0].cluster.get().members.get("dev-9")
    assert error.value.status_code == 404 and error.value.code == "not_found" and "dev-9" in error.value.message


def test_evacuate_and_restore(tg_pair):
    one, two = tg_pair
    Failover(one).wait_active(TG, "dev-1", timeout=TIMEOUT)
    member = two.cluster.get().members.get("dev-1")  # any member may evacuate any member
    assert member.evacuate() is member
    assert member.status == "Evacuated" and member.message == "evacuated: its traffic groups are served by others"
    Failover(one).wait_active(TG, "dev-2", timeout=TIMEOUT)
    wait_until(lambda: statuses(one)["dev-1"] == "Evacuated", TIMEOUT, "dev-1 to see itself Evacuated", retry=())
    assert member.evacuate().status == "Evacuated"  # idempotent
    assert member.restore().status == "Online"
    wait_until(lambda: statuses(one)["dev-1"] == "Online", TIMEOUT, "dev-1 to see itself Online again", retry=())
    wait_until(lambda: Failover(one).traffic_group(TG)["state"] == "standby",
               TIMEOUT, "dev-1 standby once restored", retry=())
    assert Failover(one).active_device(TG) == "dev-2"


def test_rename_and_a_read_only_user(tg_pair):
    one, two = tg_pair
    assert one.cluster.rename("site-b").cluster_name == "site-b"
    wait_until(lambda: two.cluster.get().cluster_name == "site-b", TIMEOUT, "dev-2 to take the name", retry=())
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
