"""The examples of f5-sdk's, pylxd's and netapp_ontap's own documentation for the cluster manager, the membership
view and cluster peers, written as their users write them, with only the import line changed (the originals' import
is in each comment), run against real Tandem devices."""

import pytest
from cluster_helpers import Cluster
from peering_helpers import Site

# from f5.multi_device.cluster import ClusterManager / from pylxd import Client / from netapp_ontap.resources
# import ClusterPeer / from pylxd.exceptions import NotFound
from tandem import Client, ClusterManager, ClusterPeer
from tandem.sdk.exceptions import NotFound, TandemError


def client_of(node) -> Client:
    device = node.device
    return Client(device.url, "admin", device.admin_password, fingerprint=device.fingerprint)


def test_f5_sdk_create_manage_extant_and_teardown(cluster_factory) -> None:
    cluster: Cluster = cluster_factory()
    bigip1, bigip2 = (client_of(node) for node in cluster.start("dev-1", "dev-2"))
    # f5-sdk: "Create a cluster"
    cm = ClusterManager()
    cm.create(devices=[bigip1, bigip2], device_group_name="my_sync_failover_group",
              device_group_type="sync-failover", device_group_partition="Common")
    # "Manage an existing cluster", by f5-sdk's name of it
    other = ClusterManager()
    other.manage_extant(devices=[bigip1, bigip2], device_group_name="my_sync_failover_group",
                        device_group_type="sync-failover", device_group_partition="Common")
    assert other.cluster.device_group_name == "my_sync_failover_group"
    # "Tear down a cluster"
    other.teardown()
    assert bigip1.request("GET", "/api/device-groups")["records"] == []
    with pytest.raises(TandemError):
        ClusterManager().manage_extant(devices=[bigip1, bigip2], device_group_name="my_sync_failover_group",
                                       device_group_type="sync-failover", device_group_partition="Common")


def test_pylxd_cluster_and_members(cluster_factory) -> None:
    cluster: Cluster = cluster_factory()
    cluster.start("dev-1", "dev-2")
    cluster.form()
    client = client_of(cluster["dev-1"])
    # pylxd: "Cluster" / "Cluster Members"
    lxd_cluster = client.cluster.get()
    assert lxd_cluster.server_name == "dev-1" and lxd_cluster.enabled
    assert sorted(member.server_name for member in lxd_cluster.members.all()) == ["dev-1", "dev-2"]
    member = lxd_cluster.members.get("dev-2")
    assert (member.url, member.status) == (cluster["dev-2"].device.url, "Online")
    try:
        lxd_cluster.members.get("node-9")
    except NotFound as missing:  # pylxd's exception name; a TandemError too
        assert missing.response.status_code == 404 and missing.status_code == 404
    else:
        raise AssertionError("no NotFound for a missing member")


def test_netapp_ontap_cluster_peer_examples(sites: tuple[Site, Site]) -> None:
    east, west = sites
    with client_of(east.nodes[0]):
        # "Creating a cluster peer request with a peer name and the generated passphrase is returned"
        resource = ClusterPeer()
        resource.name = "cp_xyz123"
        resource.authentication = {"generate_passphrase": True}
        answer = resource.post(hydrate=False, poll=True, poll_interval=1, poll_timeout=10)
        assert answer.http_response.status_code == 201 and not answer.is_job and answer.poll() is answer
        passphrase = answer.authentication["passphrase"]  # what Tandem returned before reads through
        assert passphrase and answer.resource is resource and "uuid" in answer
        answer.name = "cp_renamed"  # and is written through
        assert resource.name == "cp_renamed" and resource.patch().name == "cp_renamed"
    with client_of(west.nodes[0]):
        # "Creating a cluster peer request with a name, a peer address, and a passphrase"
        resource = ClusterPeer()
        resource.name = "to-east"
        resource.remote = {"ip_addresses": east.addresses}
        resource.authentication = {"passphrase": passphrase}
        resource.post(hydrate=True)
        # "Retrieving the cluster peers", "... with fields=*", counting them
        assert [p.name for p in ClusterPeer.get_collection(fields="*")] == ["to-east"]
        assert ClusterPeer.count_collection() == 1
        assert ClusterPeer.count_collection(**{"status.state": "unavailable"}) == 0
        # "Updating the name of a cluster peer"; "... the passphrase and the proposed encryption" (a rekey, which
        # the other cluster's admin completes with the same passphrase)
        resource.name = "east"
        assert resource.patch(poll=True).http_response.status_code == 200
        resource.authentication = {"passphrase": "new passphrase 1"}
        resource.encryption = {"proposed": "none"}
        assert resource.patch().authentication["rekey_pending"] is True
        # "Creating a cluster peer request with a proposed encryption protocol" alone: Tandem asks for a passphrase
        with pytest.raises(TandemError) as refused:
            ClusterPeer(encryption={"proposed": "tls-psk"}).post()
        assert refused.value.status_code == 422 and "generate_passphrase" in refused.value.message
        report = ClusterPeer(uuid=resource.uuid).delete(poll=True)
        assert report["remote_removed"] is True and report.http_response.status_code == 200
