"""The real `netapp_ontap` client (PyPI netapp-ontap 9.19) against two Tandem clusters: every `ClusterPeer` operation of
ONTAP's documentation, written as a netapp_ontap user writes it, on the wire to Tandem's `/api/cluster/peers`.

Tandem's intercluster addresses are `ADDR:PORT` here (the two lab sites share a host); a plain address takes the
intercluster port 11104, as ONTAP's does (`tests/unit/test_peering_models.py`)."""

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from netapp_ontap import HostConnection, config
from netapp_ontap.error import NetAppRestError
from netapp_ontap.resources import ClusterPeer
from peering_helpers import Site

from devices import ADMIN_PASSWORD
from tandem.models.peering import INTERCLUSTER_PORT
from waiting import wait_until

SOUTH = "127.77.0"
"""A third cluster's intercluster addresses (on the intercluster port: the loopback block is free for it)."""


def connection(site: Site) -> HostConnection:
    device = site.nodes[0].device
    return HostConnection(device.host, port=device.port, username="admin", password=ADMIN_PASSWORD, verify=False,
                          poll_interval=1)


@pytest.fixture
def ontap(sites: tuple[Site, Site]) -> Iterator[tuple[HostConnection, HostConnection]]:
    config.RAISE_API_ERRORS = True
    yield connection(sites[0]), connection(sites[1])


def test_offer_accept_read_count_find_patch_and_delete(sites: tuple[Site, Site], ontap) -> None:
    a, _ = sites
    east, west = ontap
    with east:  # "Creating a cluster peer request with a system-generated passphrase"
        offer = ClusterPeer()
        offer.authentication = {"expiry_time": "PT1H", "generate_passphrase": True}
        answer = offer.post(return_records=True)  # ONTAP's answer: the created record, its passphrase shown this once
        [created] = answer.http_response.json()["records"]
        passphrase = created["authentication"]["passphrase"]
        offer.get()
        assert passphrase and offer.uuid == created["uuid"] and offer.status.state == "pending"
        assert offer.ipspace.name == "Default"

    with west:  # "Creating a cluster peer request with a name, a peer address, and a passphrase"
        peer = ClusterPeer()
        peer.name = "to-east"
        peer.remote = {"ip_addresses": a.addresses}
        peer.authentication = {"passphrase": passphrase}
        response = peer.post(hydrate=True)  # created (201), then read again whole
        assert response.http_response.ok and not response.is_job
        assert (peer.name, peer.remote.name, peer.status.state) == ("to-east", "east", "available")

        # Retrieving: one, with every field, the collection with a filter on a nested field, a count, find
        one = ClusterPeer(uuid=peer.uuid)
        one.get()
        assert one.remote.name == "east" and one.authentication.in_use == "ok"
        every = ClusterPeer(uuid=peer.uuid)
        every.get(fields="*")
        assert every.encryption.state in ("none", "tls-psk") and len(every.local_network.interfaces) == 2
        assert [p.name for p in ClusterPeer.get_collection(fields="*")] == ["to-east"]
        assert [p.uuid for p in ClusterPeer.get_collection(**{"status.state": "available"})] == [peer.uuid]
        assert list(ClusterPeer.get_collection(**{"status.state": "unavailable"})) == []
        assert ClusterPeer.count_collection() == 1
        assert ClusterPeer.count_collection(**{"status.state": "unavailable"}) == 0
        found = ClusterPeer.find(name="to-east")
        assert found is not None and found.uuid == peer.uuid
        partial = ClusterPeer(uuid=peer.uuid)
        partial.get(fields="name,status.state")
        assert partial.to_dict() == {"uuid": peer.uuid, "name": "to-east", "status": {"state": "available"}}

        # Updating: a new name; a new passphrase with a new proposed encryption (a rekey, pending until the other
        # cluster's admin sets the same passphrase)
        peer.name = "east-site"
        assert peer.patch(poll=True, poll_interval=1, poll_timeout=10).http_response.status_code == 200
        peer.get()
        assert peer.name == "east-site"
        peer.authentication = {"passphrase": "a new passphrase"}
        peer.encryption = {"proposed": "none"}
        peer.patch()
        peer.get()
        assert peer.authentication.in_use == "ok" and peer.encryption.proposed == "none"

    with east:  # the offer, paired now: its remote is west
        wait_until(lambda: ClusterPeer.find(uuid=offer.uuid).status.state == "available", 10, "east sees west")
        # a second offer's passphrase extended alone (ONTAP: expiry_time is optional on its own)
        second = ClusterPeer(name="spare", authentication={"generate_passphrase": True})
        second.post(hydrate=True)
        second.authentication = {"expiry_time": "P2D"}
        second.patch()
        second.get()
        extended = datetime.fromisoformat(second.authentication.expiry_time)
        assert extended > datetime.now(UTC) + timedelta(days=1), second.authentication.expiry_time
        # a bulk delete answers a job, which the client polls to its end
        ClusterPeer.delete_collection(name="spare", poll=True, poll_interval=1, poll_timeout=10)
        assert ClusterPeer.count_collection(name="spare") == 0

    with west:  # Deleting: gone on both clusters
        peer.delete()
        assert ClusterPeer.count_collection() == 0
    with east:
        wait_until(lambda: ClusterPeer.count_collection() == 0, 10, "east told of the delete")


def test_accept_with_plain_addresses(sites: tuple[Site, Site], ontap, cluster_factory) -> None:
    """ONTAP's admin gives the other cluster's addresses without a port: Tandem takes the intercluster port 11104."""
    south = cluster_factory()
    for index in (1, 2):
        south.start(f"south-{index}", extra_args=["--intercluster-listen", f"{SOUTH}.{index}:{INTERCLUSTER_PORT}"])
    south.form()
    south_site = Site("south", south, [])
    east, _ = ontap
    with connection(south_site):
        answer = ClusterPeer(authentication={"generate_passphrase": True}).post(return_records=True)
        passphrase = answer.http_response.json()["records"][0]["authentication"]["passphrase"]
    with east:
        peer = ClusterPeer(remote={"ip_addresses": [f"{SOUTH}.1", f"{SOUTH}.2"]},
                           authentication={"passphrase": passphrase})
        peer.post(hydrate=True)
        assert peer.remote.ip_addresses == [f"{SOUTH}.{i}:{INTERCLUSTER_PORT}" for i in (1, 2)]
        assert peer.status.state == "available"
        peer.delete()


def test_errors_reach_the_client_as_netapp_rest_errors(sites: tuple[Site, Site], ontap) -> None:
    east, _ = ontap
    with east:
        with pytest.raises(NetAppRestError) as refused:
            ClusterPeer(authentication={"passphrase": "xyz12345"}).post()
        assert "a passphrase alone is not enough" in str(refused.value)
        with pytest.raises(NetAppRestError) as beyond:
            ClusterPeer(authentication={"generate_passphrase": True, "expiry_time": "P8D"}).post()
        assert "beyond 7 days" in str(beyond.value)
        short = ClusterPeer(authentication={"generate_passphrase": True, "expiry_time": "PT1S"})
        short.post()
        time.sleep(1.2)
        short.authentication = {"expiry_time": "PT1H"}  # an expired passphrase is not brought back
        with pytest.raises(NetAppRestError) as expired:
            short.patch()
        assert "expired" in str(expired.value)
        short.delete()
        assert ClusterPeer.count_collection() == 0
