"""The examples of ONTAP's cluster peer documentation (shared/seeds/004), mapped onto Tandem's names.

ONTAP's `1.2.3.4` becomes the other lab cluster's intercluster addresses, its cluster1 and cluster2
are east and west, `initial_allowed_svms` becomes `initial_allowed_partitions`; the REST bodies are
otherwise the documented ones. Every create combination the documentation lists as failing fails
here with a 4xx naming the rule; every one it lists as OK succeeds. The SDK's `ClusterPeer` runs
the same story with its full method set. The two clusters (`sites`, from conftest) are shared by
the module's tests.
"""

import pytest
from cluster_helpers import check, error_of
from peering_helpers import PASSPHRASE, Site, create_peer, needs_psk

from tandem import Client, ClusterPeer, TandemError
from waiting import wait_until


def rejected(site: Site, body: dict, rule: str) -> dict:
    """POST `body`, expect a 4xx whose message names `rule`, and nothing created."""
    response = site.api.post("/api/cluster/peers", json=body)
    assert 400 <= response.status_code < 500, response.text
    error = error_of(response)
    assert rule in error["message"], error
    assert site.peers() == [], "a rejected create leaves nothing"
    return error


# -- Creating a cluster peer ------------------------------------------------------------------------------

def test_create_with_no_params_fails(sites: tuple[Site, Site]) -> None:
    a, _ = sites
    rejected(a, {}, "generate_passphrase")


def test_create_with_a_peer_address_alone_fails(sites: tuple[Site, Site]) -> None:
    a, b = sites
    rejected(a, {"remote": {"ip_addresses": b.addresses}}, "a remote address alone is not enough")


def test_create_with_a_passphrase_alone_fails(sites: tuple[Site, Site]) -> None:
    a, _ = sites
    rejected(a, {"authentication": {"passphrase": "xyz12345"}}, "a passphrase alone is not enough")


@pytest.mark.parametrize("expiry", ["P8D", "P2W", "PT169H", "P7DT1S"])
def test_create_with_an_expiry_beyond_seven_days_fails(sites: tuple[Site, Site], expiry: str) -> None:
    a, b = sites
    rejected(a, {"remote": {"ip_addresses": b.addresses},
                 "authentication": {"passphrase": "xyz12345", "expiry_time": expiry}}, "beyond 7 days")
    rejected(a, {"authentication": {"generate_passphrase": True, "expiry_time": expiry}}, "beyond 7 days")


def test_create_with_the_sample_request_date_as_expiry_fails(sites: tuple[Site, Site]) -> None:
    a, _ = sites  # a date-time is taken (ONTAP's form too), but this one is past
    rejected(a, {"authentication": {"expiry_time": "12/25/2018 12:34:56", "generate_passphrase": True}},
             "later than now")


def test_create_with_a_proposed_encryption_alone_fails(sites: tuple[Site, Site]) -> None:
    a, _ = sites
    rejected(a, {"encryption": {"proposed": "tls-psk"}}, "generate_passphrase")


def test_create_with_local_interfaces_is_refused_and_says_where_the_cluster_listens(sites: tuple[Site, Site]) -> None:
    a, b = sites
    error = rejected(a, {"local_network": {"interfaces": [{"ip_address": "1.2.3.4"}], "netmask": "255.255.0.0",
                                           "broadcast_domain": "Default", "gateway": "1.2.0.1"},
                         "remote": {"ip_addresses": b.addresses}, "authentication": {"passphrase": "xyz12345"}},
                     "local_network")
    assert error["target"] == "local_network"


@pytest.mark.parametrize(("body", "rule"), [
    ({"authentication": {"passphrase": "xyz12345", "generate_passphrase": True}}, "not both"),
    ({"authentication": {"passphrase": "short"}, "remote": {"ip_addresses": ["127.0.0.1:9"]}}, "at least 8"),
    ({"remote": {"ip_addresses": ["1.2.3.4:70000"]}, "authentication": {"passphrase": "xyz12345"}}, "out of range"),
    ({"remote": {"ip_addresses": ["not-an-address"]}, "authentication": {"passphrase": "xyz12345"}}, "ADDR:PORT"),
    ({"authentication": {"generate_passphrase": True}, "ipspace": "Cluster"}, "only Default"),
    ({"authentication": {"generate_passphrase": True}, "initial_allowed_partitions": ["nowhere"]}, "nowhere"),
    ({"authentication": {"generate_passphrase": True}, "encryption": {"proposed": "aes"}}, "tls-psk"),
    ({"authentication": {"generate_passphrase": True}, "initial_allowed_svms": [{"name": "vs1"}]}, "vs1"),
])
def test_create_with_a_malformed_body_fails(sites: tuple[Site, Site], body: dict, rule: str) -> None:
    a, _ = sites
    rejected(a, body, rule)


def test_create_with_an_unreachable_address_fails_and_leaves_nothing(sites: tuple[Site, Site]) -> None:
    a, b = sites
    b.cut()
    try:
        response = a.api.post("/api/cluster/peers", json={"remote": {"ip_addresses": b.addresses},
                                                           "authentication": {"passphrase": "xyz12345"}})
    finally:
        b.heal()
    assert response.status_code == 502 and "cannot pair" in error_of(response)["message"], response.text
    assert a.peers() == []


def test_create_with_a_peer_name_and_a_generated_passphrase(sites: tuple[Site, Site]) -> None:
    a, b = sites
    made = create_peer(a, {"name": "cp_xyz123", "authentication": {"generate_passphrase": True}})
    assert made["name"] == "cp_xyz123" and made["status"]["state"] == "pending"
    assert made["authentication"]["expiry_time"], "an offer expires (one hour unless told)"
    create_peer(b, {"remote": {"ip_addresses": a.addresses},
                    "authentication": {"passphrase": made["authentication"]["passphrase"]}})
    a.wait_state("available")
    assert a.peer()["name"] == "cp_xyz123", "a name given is kept"


def test_create_with_a_name_a_peer_address_and_a_passphrase(sites: tuple[Site, Site]) -> None:
    a, b = sites
    made = create_peer(a, {"name": "cp_xyz123", "remote": {"ip_addresses": b.addresses},
                           "authentication": {"passphrase": "xyz12345"}})
    assert made["status"]["state"] == "pending", "the other cluster has not created its side yet"
    other = create_peer(b, {"remote": {"ip_addresses": a.addresses}, "authentication": {"passphrase": "xyz12345"}})
    assert other["status"]["state"] == "available" and other["name"] == "east"
    a.wait_state("available")


@pytest.mark.parametrize("encryption", ["none", pytest.param("tls-psk", marks=needs_psk)])
def test_create_with_a_passphrase_a_peer_address_and_any_proposed_encryption(sites: tuple[Site, Site],
                                                                              encryption: str) -> None:
    a, b = sites
    body = {"authentication": {"passphrase": PASSPHRASE}, "encryption": {"proposed": encryption}, "ipspace": "Default",
            "initial_allowed_partitions": ["Common"]}
    create_peer(a, {"remote": {"ip_addresses": b.addresses}, **body})
    other = create_peer(b, {"remote": {"ip_addresses": a.addresses}, **body})
    assert other["encryption"] == {"proposed": encryption, "state": encryption}
    assert other["initial_allowed_partitions"] == ["Common"] and other["ipspace"]["name"] == "Default"
    a.wait_state("available")
    b.wait_state("available")


# -- Retrieve, update, delete --------------------------------------------------------------------------------

def _paired(a: Site, b: Site) -> tuple[str, str]:
    create_peer(a, {"remote": {"ip_addresses": b.addresses}, "authentication": {"passphrase": PASSPHRASE}})
    create_peer(b, {"remote": {"ip_addresses": a.addresses}, "authentication": {"passphrase": PASSPHRASE}})
    a.wait_state("available")
    b.wait_state("available")
    return a.peer()["uuid"], b.peer()["uuid"]


def test_retrieve_cluster_peers(sites: tuple[Site, Site]) -> None:
    a, b = sites
    uuid, _ = _paired(a, b)
    listed = check(a.api.get("/api/cluster/peers/"), 200).json()
    assert [p["uuid"] for p in listed["records"]] == [uuid] and listed["num_records"] == 1
    one = check(a.api.get(f"/api/cluster/peers/{uuid}"), 200).json()
    assert one["remote"]["name"] == "west" and one["status"]["state"] == "available"
    every = check(a.api.get(f"/api/cluster/peers/{uuid}", params={"fields": "*"}), 200).json()
    assert set(every) >= {"uuid", "name", "remote", "authentication", "encryption", "status", "ipspace",
                          "local_network", "initial_allowed_partitions"}
    assert check(a.api.get("/api/cluster/peers", params={"fields": "name,status"}), 200).json()["records"][0].keys() \
        == {"name", "status"}


def test_update_with_an_empty_body_has_no_effect(sites: tuple[Site, Site]) -> None:
    a, b = sites
    uuid, _ = _paired(a, b)
    before = a.peer()
    after = check(a.api.patch(f"/api/cluster/peers/{uuid}", json={}), 200).json()
    assert {k: v for k, v in after.items() if k != "status"} == {k: v for k, v in before.items() if k != "status"}


def test_update_the_proposed_encryption_needs_a_passphrase(sites: tuple[Site, Site]) -> None:
    a, b = sites
    uuid, other = _paired(a, b)
    response = a.api.patch(f"/api/cluster/peers/{uuid}", json={"encryption": {"proposed": "none"}})
    assert response.status_code == 422 and "passphrase" in error_of(response)["message"]
    body = {"authentication": {"passphrase": "xyz12345", "in_use": "ok"}, "encryption": {"proposed": "none"}}
    check(a.api.patch(f"/api/cluster/peers/{uuid}", json=body), 200)
    done = check(b.api.patch(f"/api/cluster/peers/{other}", json=body), 200).json()
    assert done["encryption"]["state"] == "none" and not done["authentication"]["rekey_pending"]
    a.wait_state("available")


def test_update_the_passphrase_with_a_wrong_one_on_the_other_side_changes_nothing(sites: tuple[Site, Site]) -> None:
    a, b = sites
    uuid, other = _paired(a, b)
    check(a.api.patch(f"/api/cluster/peers/{uuid}", json={"authentication": {"passphrase": "xyz12345",
                                                                             "in_use": "ok"}}), 200)
    response = b.api.patch(f"/api/cluster/peers/{other}", json={"authentication": {"passphrase": "abc98765"}})
    assert response.status_code == 403, response.text
    assert not b.peer()["authentication"]["rekey_pending"] and b.peer()["status"]["state"] == "available"
    assert a.peer()["authentication"]["rekey_pending"], "east still waits for the new passphrase"


def test_set_an_auto_generated_passphrase(sites: tuple[Site, Site]) -> None:
    a, b = sites
    uuid, other = _paired(a, b)
    patched = check(a.api.patch(f"/api/cluster/peers/{uuid}",
                                json={"authentication": {"generate_passphrase": True, "in_use": "ok"}}), 200).json()
    passphrase = patched["authentication"]["passphrase"]
    assert patched["authentication"]["rekey_pending"]
    check(b.api.patch(f"/api/cluster/peers/{other}", json={"authentication": {"passphrase": passphrase}}), 200)
    wait_until(lambda: not a.peer()["authentication"]["rekey_pending"], 10, "the new key agreed")
    a.wait_state("available")


def test_update_remote_ip_addresses(sites: tuple[Site, Site]) -> None:
    a, b = sites
    uuid, _ = _paired(a, b)
    one = b.addresses[:1]
    patched = check(a.api.patch(f"/api/cluster/peers/{uuid}", json={"remote": {"ip_addresses": one}}), 200).json()
    assert patched["remote"]["ip_addresses"] == one
    a.wait_state("available")


def test_delete_a_cluster_peer(sites: tuple[Site, Site]) -> None:
    a, b = sites
    uuid, _ = _paired(a, b)
    check(a.api.delete(f"/api/cluster/peers/{uuid}"), 200)
    assert a.api.get(f"/api/cluster/peers/{uuid}").status_code == 404
    assert a.api.delete("/api/cluster/peers/8becc0d4-c12c-11e8-9ceb-005056bbd143").status_code == 404
    wait_until(lambda: b.peers() == [], 10, "west to drop its side")


# -- The SDK ------------------------------------------------------------------------------------------------

def _client(site: Site) -> Client:
    device = site.nodes[0].device
    return Client(device.url, "admin", device.admin_password, fingerprint=device.fingerprint)


def test_the_sdk_cluster_peer_has_the_full_method_set(sites: tuple[Site, Site]) -> None:
    a, b = sites
    with _client(a) as east, _client(b) as west:
        offer = ClusterPeer(name="cp_xyz123", authentication={"generate_passphrase": True}).post(connection=east)
        passphrase = offer.authentication["passphrase"]
        assert offer.status["state"] == "pending" and offer.uuid
        accepted = ClusterPeer(remote={"ip_addresses": a.addresses}, authentication={"passphrase": passphrase})
        accepted.post(hydrate=True, connection=west)
        assert accepted.remote["name"] == "east"
        offer.poll(state="available", timeout=10)
        assert offer.remote["name"] == "west" and "passphrase" not in offer.authentication

        found = ClusterPeer.find(name="cp_xyz123", connection=east)
        assert found.uuid == offer.uuid
        assert [p.uuid for p in ClusterPeer.get_collection(connection=east)] == [offer.uuid]
        found.name = "to-west"
        found.patch(hydrate=True)
        assert ClusterPeer(uuid=offer.uuid).get(connection=east).name == "to-west"
        found.authentication["passphrase"] = "xyz12345"
        found.patch()  # only the changed sub-field travels (the others are the server's)
        assert found.authentication["rekey_pending"]

        job = ClusterPeer.patch_collection({"initial_allowed_partitions": ["Common"]}, name="to-*", connection=east)
        assert job.state == "succeeded" and job.result["count"] == 1
        assert ClusterPeer(uuid=offer.uuid).get(connection=east).initial_allowed_partitions == ["Common"]

        with pytest.raises(TandemError) as missing:
            ClusterPeer(uuid="8becc0d4-c12c-11e8-9ceb-005056bbd143").get(connection=east)
        assert missing.value.status_code == 404
        with pytest.raises(TandemError) as waited:
            ClusterPeer(uuid=offer.uuid).poll(state="pending", timeout=0.3, connection=east)
        assert waited.value.code == "timeout"

        report = ClusterPeer(uuid=accepted.uuid).delete(connection=west)
        assert report["remote_removed"] is True
        job = ClusterPeer.delete_collection(name="*", connection=west)
        assert job.state == "succeeded" and job.result["count"] == 0
