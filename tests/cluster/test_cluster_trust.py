"""Trust domain: adding devices (from any member, spreading to all), refusals that change nothing,
removal, and a peer channel that only trusted certificates get through."""

import http.server
import ssl
from pathlib import Path

import pytest
from cluster_helpers import Cluster, check, error_of
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import connect

from backends import fake_device
from devices import free_port
from tandem.trust.identity import load_or_create
from waiting import wait_until


def trust_state(node) -> dict:
    """What adding or removing a device may change: the domain id and its devices (not connectivity)."""
    body = check(node.api.get("/api/trust"), 200).json()
    devices = sorted((d["name"], d["id"], d["fingerprint"]) for d in body["devices"])
    return {"domain_id": body["domain_id"], "devices": devices}


def peer_probe(port: int, cert: Path | None = None, key: Path | None = None) -> str:
    """Open the peer channel (WebSocket over mutual TLS, path /peer) of the device listening on `port`,
    presenting `cert`/`key` (no client certificate if not given): "refused" when the TLS handshake
    fails or the device closes the channel at once, "accepted" when it is still open a second later
    (the device then waits for the dialer to speak)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the listener's own certificate is not what is tested here
    if cert is not None:
        context.load_cert_chain(cert, key)
    try:
        with connect(f"wss://127.0.0.1:{port}/peer", ssl=context, open_timeout=5, close_timeout=1) as channel:
            channel.recv(timeout=1)
    except TimeoutError:
        return "accepted"
    except (ssl.SSLError, ConnectionError, ConnectionClosed, InvalidHandshake):
        return "refused"
    return "accepted"


@pytest.fixture(scope="module")
def domain(module_cluster_factory) -> Cluster:
    """dev-1, dev-2, dev-3 in one trust domain: dev-1 added dev-2, then dev-2 added dev-3."""
    cluster = module_cluster_factory()
    one, two, three = cluster.start("dev-1", "dev-2", "dev-3")
    check(cluster.trust_request(one, two), 201)
    record = check(cluster.trust_request(two, three), 201).json()
    assert record["name"] == "dev-3"
    assert record["fingerprint"] == three.device.fingerprint
    return cluster


def test_devices_added_from_different_members_all_trust_each_other(domain):
    names = ["dev-1", "dev-2", "dev-3"]
    domain.wait_trusted(domain.nodes)
    domain_ids = {check(n.api.get("/api/trust"), 200).json()["domain_id"] for n in domain}
    assert len(domain_ids) == 1

    def all_connected() -> bool:
        return all(d["connected"] for n in domain
                   for d in check(n.api.get("/api/trust/devices"), 200).json()["records"] if not d["self"])

    wait_until(all_connected, 15, "every device connected to every other one over the peer channel",
               detail=lambda: {n.name: n.api.get("/api/trust/devices").json() for n in domain})
    for node in domain:
        records = {d["name"]: d for d in check(node.api.get("/api/trust/devices"), 200).json()["records"]}
        assert sorted(records) == names
        for other in domain:
            record = records[other.name]
            assert record["self"] is (other is node)
            assert record["fingerprint"] == other.device.fingerprint
            assert record["management_url"] == other.device.url
            assert record["peer_url"].endswith(f":{other.peer_port}"), record
            assert record["id"] == check(other.api.get("/api/device"), 200).json()["id"]


def test_wrong_password_is_refused_and_changes_nothing(domain, cluster_factory):
    (outsider,) = cluster_factory().start("dev-9")
    before = {n.name: trust_state(n) for n in [*domain, outsider]}
    response = domain["dev-3"].api.post("/api/trust/devices", json={
        "url": outsider.device.url, "username": "admin", "password": "not-the-password",
        "fingerprint": outsider.device.fingerprint})
    assert response.status_code == 422, response.text
    assert error_of(response)["target"] == "password"
    assert {n.name: trust_state(n) for n in [*domain, outsider]} == before


def test_unreachable_address_is_a_502_naming_the_url(domain):
    before = trust_state(domain["dev-1"])
    response = domain["dev-1"].api.post("/api/trust/devices", json={
        "url": f"https://127.0.0.1:{free_port()}", "username": "admin", "password": "whatever-password"})
    assert response.status_code == 502, response.text
    assert error_of(response)["target"] == "url"
    assert trust_state(domain["dev-1"]) == before


class _NoDeviceRecord(http.server.BaseHTTPRequestHandler):
    """Logs anyone in, then answers `GET /api/device` with something that is no device record."""

    def _json(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._json(b'{"token": "t"}')

    def do_GET(self) -> None:
        self._json(b'{"name": "dev-9"}')

    def log_message(self, *args: object) -> None:
        pass


def test_a_device_answering_no_device_record_is_a_502_and_changes_nothing(domain, tmp_path):
    before = trust_state(domain["dev-1"])
    with fake_device(_NoDeviceRecord, tmp_path / "fake") as url:
        response = domain["dev-1"].api.post("/api/trust/devices", json={
            "url": url, "username": "admin", "password": "whatever-password"})
    assert response.status_code == 502, response.text
    assert error_of(response)["target"] == "url" and "malformed device record" in error_of(response)["message"]
    assert trust_state(domain["dev-1"]) == before


def test_a_fingerprint_that_does_not_match_is_refused(domain, cluster_factory):
    (outsider,) = cluster_factory().start("dev-9")
    before = {n.name: trust_state(n) for n in [domain["dev-1"], outsider]}
    response = Cluster.trust_request(domain["dev-1"], outsider, fingerprint=domain["dev-2"].device.fingerprint)
    assert response.status_code == 409, response.text
    assert error_of(response)["target"] == "fingerprint"
    assert {n.name: trust_state(n) for n in [domain["dev-1"], outsider]} == before
    # the right fingerprint is accepted: the refusal was about the fingerprint
    check(Cluster.trust_request(domain["dev-1"], outsider), 201)
    domain.wait_trusted([*domain.nodes, outsider])
    check(domain["dev-2"].api.delete("/api/trust/devices/dev-9"), 204)
    domain.wait_trusted(domain.nodes)


def test_a_device_already_trusted_is_a_conflict(domain):
    before = trust_state(domain["dev-1"])
    response = Cluster.trust_request(domain["dev-1"], domain["dev-3"])
    assert response.status_code == 409, response.text
    assert trust_state(domain["dev-1"]) == before


def test_a_device_of_another_domain_is_refused(domain, cluster_factory):
    other = cluster_factory()
    four, five = other.start("dev-4", "dev-5")
    other.trust(four, [five])
    other.wait_trusted([four, five])
    before = {n.name: trust_state(n) for n in [*domain, four, five]}
    response = Cluster.trust_request(domain["dev-1"], four)
    assert response.status_code == 409, response.text
    assert {n.name: trust_state(n) for n in [*domain, four, five]} == before


def test_untrusted_clients_are_refused_by_the_peer_channel(domain, tmp_path):
    one, two = domain["dev-1"], domain["dev-2"]
    trusted = two.device.data_dir / "identity"
    assert peer_probe(one.peer_port, trusted / "cert.pem", trusted / "key.pem") == "accepted"
    stranger = load_or_create(tmp_path / "stranger", "stranger", ["127.0.0.1"])
    assert peer_probe(one.peer_port, stranger.cert_path, stranger.key_path) == "refused"
    impostor = load_or_create(tmp_path / "impostor", "dev-2", ["127.0.0.1"])  # dev-2's name, not its key
    assert peer_probe(one.peer_port, impostor.cert_path, impostor.key_path) == "refused"
    assert peer_probe(one.peer_port) == "refused"


def test_a_removed_device_is_gone_everywhere_and_starts_its_own_domain(cluster_factory):
    cluster = cluster_factory()
    one, two, three = cluster.start("dev-1", "dev-2", "dev-3")
    cluster.trust(one, [two, three])
    cluster.wait_trusted([one, two, three])
    check(three.api.post("/api/pools", json={"name": "kept-by-dev-3"}), 201)
    old_domain = trust_state(one)["domain_id"]
    identity = three.device.data_dir / "identity"
    assert peer_probe(one.peer_port, identity / "cert.pem", identity / "key.pem") == "accepted"

    check(two.api.delete("/api/trust/devices/dev-3"), 204)
    cluster.wait_trusted([one, two])
    cluster.wait_trusted([three])
    assert trust_state(three)["domain_id"] != old_domain
    check(three.api.get("/api/pools/Common/kept-by-dev-3"), 200)
    assert peer_probe(one.peer_port, identity / "cert.pem", identity / "key.pem") == "refused"
    response = two.api.delete("/api/trust/devices/dev-3")
    assert response.status_code == 404, response.text
