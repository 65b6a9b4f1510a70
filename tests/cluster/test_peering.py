"""Cluster peering between two lab clusters of two devices each, on loopback (real daemons, real sockets).

Each site's intercluster listeners sit behind cut proxies, so that the link between the sites can be
cut and healed, and what crosses it can be read as an eavesdropper would. The two clusters
(`sites`, from conftest) are shared by the module's tests; each test leaves no relationship behind.
"""

import socket
import struct
import time

import httpx
from cluster_helpers import check, config_diff, error_of
from peering_helpers import DEFAULT_ENCRYPTION, Site, create_peer, needs_psk, pair

from waiting import wait_until


def offer(site: Site, **authentication) -> dict:
    return create_peer(site, {"authentication": {"generate_passphrase": True, **authentication}})


def test_peer_with_a_passphrase_on_both_sides(sites: tuple[Site, Site]) -> None:
    a, b = sites
    first, second = pair(a, b)
    assert first["name"].startswith("pending-") and first["authentication"]["in_use"] == "absent"
    assert second["status"]["state"] == "available", second
    assert second["name"] == "east" and second["remote"]["name"] == "east"
    a.wait_state("available")
    b.wait_state("available")
    seen_by_a = a.peer()
    assert seen_by_a["uuid"] == first["uuid"] and seen_by_a["name"] == "west"
    assert seen_by_a["authentication"]["in_use"] == "ok" and "passphrase" not in seen_by_a["authentication"]
    assert seen_by_a["encryption"] == {"proposed": DEFAULT_ENCRYPTION, "state": DEFAULT_ENCRYPTION}
    members = wait_until(lambda: a.peer()["remote"]["members"], 5, "west's members")
    assert sorted((m["server_name"], m["status"]) for m in members) == [("west-1", "Online"), ("west-2", "Online")]
    assert sorted(seen_by_a["local_network"]["ip_addresses"]) == sorted(
        d for d in a.peer(a.nodes[1])["local_network"]["ip_addresses"])


def test_offer_is_accepted_by_the_other_cluster(sites: tuple[Site, Site]) -> None:
    a, b = sites
    made = offer(a, expiry_time="PT2H")
    passphrase = made["authentication"]["passphrase"]
    assert len(passphrase) >= 20 and made["status"]["state"] == "pending" and made["remote"]["ip_addresses"] == []
    assert "passphrase" not in a.peer()["authentication"], "the passphrase is shown once, when generated"
    accepted = create_peer(b, {"remote": {"ip_addresses": a.addresses}, "authentication": {"passphrase": passphrase}})
    assert accepted["status"]["state"] == "available" and accepted["name"] == "east"
    a.wait_state("available")
    b.wait_state("available")
    assert a.peer()["name"] == "west"
    assert sorted(a.peer()["remote"]["ip_addresses"]) == sorted(b.peer()["local_network"]["ip_addresses"]), (
        "the offering side learns the addresses the accepting cluster listens on")


def test_wrong_passphrase_fails_and_leaves_nothing(sites: tuple[Site, Site]) -> None:
    a, b = sites
    passphrase = offer(a)["authentication"]["passphrase"]
    response = b.api.post("/api/cluster/peers", json={"remote": {"ip_addresses": a.addresses},
                                                      "authentication": {"passphrase": "not the passphrase"}})
    assert response.status_code == 403, response.text
    assert "passphrase" in error_of(response)["message"]
    assert b.peers() == [] and a.peer()["status"]["state"] == "pending"
    assert passphrase.encode() not in a.proxies[0].captured + a.proxies[1].captured
    create_peer(b, {"remote": {"ip_addresses": a.addresses}, "authentication": {"passphrase": passphrase}})
    a.wait_state("available")


def test_expired_offer_fails_and_leaves_nothing(sites: tuple[Site, Site]) -> None:
    a, b = sites
    passphrase = offer(a, expiry_time="PT1S")["authentication"]["passphrase"]
    time.sleep(1.2)
    response = b.api.post("/api/cluster/peers", json={"remote": {"ip_addresses": a.addresses},
                                                      "authentication": {"passphrase": passphrase}})
    assert response.status_code == 403, response.text
    assert "expired" in error_of(response)["message"]
    assert b.peers() == []
    assert a.peer()["authentication"]["in_use"] == "expired" and a.peer()["status"]["state"] == "pending"


@needs_psk
def test_tls_psk_encrypts_the_link_and_none_does_not(sites: tuple[Site, Site]) -> None:
    a, b = sites
    pair(a, b)
    b.wait_state("available")
    a.wait_state("available")
    time.sleep(1.2)  # a round of status probes
    seen = bytes(a.proxies[0].captured + b.proxies[0].captured)
    assert b"members" not in seen and b"west-1" not in seen, "tls-psk: nothing after the hello is in clear"
    rotate = {"authentication": {"passphrase": "a new passphrase", "in_use": "ok"}, "encryption": {"proposed": "none"}}
    patched = check(a.api.patch(f"/api/cluster/peers/{a.peer()['uuid']}", json=rotate), 200).json()
    assert patched["authentication"]["rekey_pending"] and patched["status"]["state"] == "available", patched
    check(b.api.patch(f"/api/cluster/peers/{b.peer()['uuid']}", json=rotate), 200)
    for site in (a, b):
        wait_until(lambda site=site: all(site.peer(n)["encryption"]["state"] == "none" for n in site.nodes), 10,
                   f"{site.name} on encryption none")
        site.wait_state("available")
    a.proxies[0].captured.clear()
    time.sleep(1.2)
    assert b"members" in bytes(a.proxies[0].captured), "encryption none: the frames travel in clear"


def test_delete_removes_the_relationship_on_both_sides(sites: tuple[Site, Site]) -> None:
    a, b = sites
    pair(a, b)
    a.wait_state("available")
    report = check(a.api.delete(f"/api/cluster/peers/{a.peer()['uuid']}"), 200).json()
    assert report["remote_removed"] is True, report
    for site in (a, b):
        wait_until(lambda site=site: all(site.peers(n) == [] for n in site.nodes), 10, f"{site.name} without peers")


def test_delete_while_unreachable_marks_the_other_side(sites: tuple[Site, Site]) -> None:
    a, b = sites
    pair(a, b)
    a.wait_state("available")
    b.cut()
    a.wait_state("unavailable")
    report = check(a.api.delete(f"/api/cluster/peers/{a.peer()['uuid']}"), 200).json()
    assert report["remote_removed"] is False and "unreachable" in report["message"]
    assert a.peers() == []
    b.wait_state("unavailable")
    assert "no relationship" in b.peer()["status"]["message"], b.peer()
    b.heal()


def _partition(site: Site, name: str) -> None:
    api = site.api
    check(api.post("/api/partitions", json={"name": name}), 201)
    check(api.post("/api/monitors", json={"partition": name, "name": "tcp", "type": "tcp"}), 201)
    check(api.post("/api/pools", json={"partition": name, "name": "web", "monitor": "tcp",
                                       "members": [{"address": "10.1.0.1", "port": 80}]}), 201)
    check(api.post("/api/virtuals", json={"partition": name, "name": "vs", "address": "10.9.0.1", "port": 80,
                                          "pool": "web"}), 201)


def _wait_mirrored(a: Site, b: Site, partition: str) -> None:
    want = a.nodes[0].config([partition])
    for node in b.nodes:
        wait_until(lambda node=node: not config_diff({"source": want, node.name: node.config([partition])}), 15,
                   f"{partition} mirrored on {node.name}",
                   detail=lambda node=node: {"diff": config_diff({"source": want, node.name: node.config([partition])}),
                                             "status": b.cluster.statuses()})


def test_mirror_a_partition_follow_changes_and_catch_up_after_a_break(sites: tuple[Site, Site]) -> None:
    a, b = sites
    pair(a, b)
    a.wait_state("available")
    _partition(a, "shop")
    uuid = a.peer()["uuid"]
    mirror = check(a.api.post(f"/api/cluster/peers/{uuid}/mirrors", json={"partition": "shop"}), 201).json()
    assert mirror["partition"] == "shop"
    _wait_mirrored(a, b, "shop")
    assert b.peer()["mirrored_in"] == ["shop"]
    denied = b.api.post("/api/pools", json={"partition": "shop", "name": "local"})
    assert denied.status_code == 409 and "mirror" in error_of(denied)["message"], denied.text
    check(a.api.post("/api/pools/shop/web/members", json={"address": "10.1.0.2", "port": 80}), 201)
    check(a.api.delete("/api/virtuals/shop/vs"), 204)
    _wait_mirrored(a, b, "shop")
    assert "shop/vs" not in b.nodes[1].config(["shop"])["virtuals"]

    a.cut()
    b.cut()
    a.wait_state("unavailable")
    check(a.api.post("/api/virtuals", json={"partition": "shop", "name": "vs2", "address": "10.9.0.2", "port": 80,
                                            "pool": "web"}), 201)
    check(a.api.patch("/api/pools/shop/web", json={"lb_method": "least-connections"}), 200)
    time.sleep(1.0)
    assert "shop/vs2" not in b.nodes[0].config(["shop"])["virtuals"], "cut: nothing crosses"
    a.heal()
    b.heal()
    a.wait_state("available")
    _wait_mirrored(a, b, "shop")
    views = check(a.api.get(f"/api/cluster/peers/{uuid}/mirrors"), 200).json()["records"]
    assert [v["partition"] for v in views] == ["shop"]


def test_mirror_does_not_overwrite_a_partition_of_the_destination(sites: tuple[Site, Site]) -> None:
    a, b = sites
    pair(a, b)
    a.wait_state("available")
    _partition(a, "apps")
    check(b.api.post("/api/partitions", json={"name": "apps", "description": "west's own"}), 201)
    check(b.api.patch("/api/device-groups/dg", json={"partitions": ["Common", "apps"]}), 200)
    uuid = a.peer()["uuid"]
    check(a.api.post(f"/api/cluster/peers/{uuid}/mirrors", json={"partition": "apps"}), 201)
    view = wait_until(lambda: (v := check(a.api.get(f"/api/cluster/peers/{uuid}/mirrors/apps"), 200).json())
                      ["state"] == "broken" and v, 10, "the mirror to report the refusal")
    assert "not a mirror" in view["message"], view
    assert b.nodes[0].config(["apps"])["pools"] == {}


def test_the_intercluster_listener_survives_garbage(sites: tuple[Site, Site]) -> None:
    a, b = sites
    host, port = a.proxies[0].target
    for payload in (b"GET / HTTP/1.1\r\n\r\n", struct.pack(">I", 1 << 30), struct.pack(">I", 5) + b"nope!",
                    struct.pack(">I", 2) + b"[]"):
        with socket.create_connection((host, port), timeout=5) as sock:
            sock.sendall(payload)
            sock.settimeout(5)
            try:
                while sock.recv(4096):
                    pass
            except (TimeoutError, ConnectionResetError):
                pass
    pair(a, b)
    a.wait_state("available")


def test_peering_needs_credentials_and_admin_rights(sites: tuple[Site, Site]) -> None:
    a, _ = sites
    url = a.nodes[0].device.url
    assert httpx.get(f"{url}/api/cluster/peers", verify=False).status_code == 401
    check(a.api.post("/api/users", json={"name": "viewer", "role": "auditor", "password": "viewer-pass"}), 201)
    token = check(httpx.post(f"{url}/api/auth/login", json={"username": "viewer", "password": "viewer-pass"},
                             verify=False), 200).json()["token"]
    guest = httpx.Client(base_url=url, verify=False, headers={"Authorization": f"Bearer {token}"})
    assert guest.get("/api/cluster/peers").status_code == 200
    assert guest.post("/api/cluster/peers", json={"authentication": {"generate_passphrase": True}}).status_code == 403
    assert a.peers() == []
    guest.close()


def test_peer_with_a_name_unknown_is_not_found(sites: tuple[Site, Site]) -> None:
    a, _ = sites
    for path in ("/api/cluster/peers/8becc0d4-c12c-11e8-9ceb-005056bbd143", "/api/cluster/peers/nope/mirrors"):
        response = a.api.get(path)
        assert response.status_code == 404 and error_of(response)["code"] == "not_found"
    assert a.api.delete("/api/cluster/peers/8becc0d4-c12c-11e8-9ceb-005056bbd143").status_code == 404
