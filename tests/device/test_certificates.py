"""`/api/certificates` on real devices: a PEM chain and its key, the key written but never read back (not by
a GET, a list, `fields=`, a batch, the SDK, nor in the log), what the leaf shows, every refusal (422 with
its target, nothing written), a certificate in use kept (409), and the key replicated to a device group's
other member, which does not show it either."""

import json
import sqlite3
from collections.abc import Iterator

import httpx
import pytest
from api_http import error_of, session
from cluster_helpers import Cluster

from devices import RunningDevice
from pki import Issued, TestCA
from tandem.device import STORE_FILE
from tandem.sdk import Certificate
from waiting import wait_until


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA()


@pytest.fixture(scope="module")
def api(shared_device: RunningDevice) -> httpx.Client:
    return session(shared_device)


def key_material(issued: Issued) -> list[str]:
    """Lines of the key's base64 body: none may appear in any answer or log line."""
    return [line for line in issued.key.splitlines() if not line.startswith("-----")]


def assert_no_key(text: str, *issued: Issued) -> None:
    assert '"key":' not in text
    for one in issued:
        for line in key_material(one):
            assert line not in text


def create(api: httpx.Client, name: str, issued: Issued, **fields) -> httpx.Response:
    return api.post("/api/certificates", json={"name": name, "certificate": issued.chain, "key": issued.key,
                                               **fields})


def test_the_key_is_never_read_back(api, ca, shared_device):
    issued = ca.issue("www.example.com", "www.example.com", "example.com")
    created = create(api, "www", issued, description="the site")
    assert created.status_code == 201, created.text
    assert created.headers["location"] == "/api/certificates/Common/www"
    assert_no_key(created.text, issued)
    body = created.json()
    assert body["subjects"] == ["www.example.com", "example.com"]
    assert body["fingerprint"] == issued.fingerprint and body["status"] == "valid"
    assert body["not_after"] == issued.not_after.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert body["certificate"] == issued.chain

    for path in ("/api/certificates/Common/www", "/api/certificates", "/api/certificates?fields=key",
                 "/api/certificates?fields=key,certificate", "/api/certificates?fields=*", "/api/certificates?key=*"):
        answer = api.get(path)
        assert answer.status_code == 200, answer.text
        assert_no_key(answer.text, issued)
    assert api.get("/api/certificates/Common/www").json() == body
    assert api.get("/api/certificates?fields=key").json()["records"] == [{"partition": "Common", "name": "www"}]

    batch = api.post("/api/batch", json={"operations": [
        {"action": "update", "resource": "certificates", "name": "www", "body": {"key": issued.key}}]})
    assert batch.status_code == 200, batch.text
    assert_no_key(batch.text, issued)
    assert_no_key(shared_device.log_path.read_text(), issued)


def test_computed_fields_and_the_expiring_status(api, ca):
    soon = ca.issue("soon.example.com", days=10)
    answer = create(api, "soon", soon)
    assert answer.status_code == 201, answer.text
    assert answer.json()["status"] == "expiring"
    listed = api.get("/api/certificates?status=expiring")
    assert listed.status_code == 400  # computed fields are shown, not filtered on


def test_a_change_without_key_keeps_the_stored_key(api, ca):
    issued = ca.issue("keep.example.com")
    assert create(api, "keep", issued).status_code == 201
    patched = api.patch("/api/certificates/Common/keep", json={"description": "renewed soon"})
    assert patched.status_code == 200, patched.text
    renewed = ca.issue("keep.example.com", days=700, private=issued.private)  # same key, new certificate
    patched = api.patch("/api/certificates/Common/keep", json={"certificate": renewed.chain})
    assert patched.status_code == 200, patched.text
    assert patched.json()["fingerprint"] == renewed.fingerprint
    other = ca.issue("other.example.com")
    refused = api.patch("/api/certificates/Common/keep", json={"certificate": other.chain})
    assert refused.status_code == 422 and error_of(refused)["target"] == "key"
    assert api.get("/api/certificates/Common/keep").json()["fingerprint"] == renewed.fingerprint
    rekeyed = api.patch("/api/certificates/Common/keep", json={"certificate": other.chain, "key": other.key})
    assert rekeyed.status_code == 200, rekeyed.text
    assert_no_key(rekeyed.text, issued, other)


@pytest.mark.parametrize(("case", "target", "message"), [
    ("key of another", "key", "does not match"),
    ("invalid pem", "certificate", "not a valid PEM certificate chain"),
    ("not pem", "certificate", "only PEM CERTIFICATE blocks"),
    ("key in the chain", "certificate", "only PEM CERTIFICATE blocks"),
    ("invalid key", "key", "not a valid unencrypted PEM private key"),
    ("expired", "certificate", "expired on"),
    ("not yet valid", "certificate", "not valid before"),
    ("chain too long", "certificate", "at most 65536 characters"),
    ("key too long", "key", "at most 16384 characters"),
])
def test_refusals_write_nothing(api, ca, shared_device, case, target, message):
    issued, other = ca.issue("r.example.com"), ca.issue("o.example.com")
    body = {"name": "refused", "certificate": issued.chain, "key": issued.key}
    body |= {
        "key of another": {"key": other.key},
        "invalid pem": {"certificate": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"},
        "not pem": {"certificate": "hello"},
        "key in the chain": {"certificate": issued.chain + issued.key},
        "invalid key": {"key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"},
        "expired": (lambda e: {"certificate": e.chain, "key": e.key})(ca.issue("e", days=-1, starts=-10)),
        "not yet valid": (lambda e: {"certificate": e.chain, "key": e.key})(ca.issue("n", days=9, starts=2)),
        "chain too long": {"certificate": issued.chain * 100},
        "key too long": {"key": issued.key * 70},
    }[case]
    answer = api.post("/api/certificates", json=body)
    assert answer.status_code == 422, answer.text
    assert error_of(answer)["target"] == target and message in error_of(answer)["message"]
    assert_no_key(answer.text, issued, other)
    assert api.get("/api/certificates/Common/refused").status_code == 404
    assert_no_key(shared_device.log_path.read_text(), issued, other)


def test_a_certificate_in_use_cannot_be_deleted(api, ca):
    issued = ca.issue("used.example.com")
    assert create(api, "used", issued).status_code == 201
    virtual = api.post("/api/virtuals", json={"name": "tls", "address": "127.0.0.1", "port": 18443,
                                              "protocol": "https", "certificates": ["used"]})
    assert virtual.status_code == 201, virtual.text
    refused = api.delete("/api/certificates/Common/used")
    assert refused.status_code == 409 and error_of(refused)["target"] == "name"
    assert "virtual /Common/tls" in error_of(refused)["message"]
    assert api.delete("/api/virtuals/Common/tls").status_code == 204
    assert api.delete("/api/certificates/Common/used").status_code == 204


def test_the_sdk_object_forgets_the_key_once_sent(shared_device, ca):
    issued = ca.issue("sdk.example.com")
    with shared_device.client() as client:
        cert = Certificate(name="sdk", certificate=issued.chain, key=issued.key, connection=client).post()
        assert "key" not in cert.to_dict() and cert.status == "valid"
        assert "key" not in Certificate(name="sdk", connection=client).get().to_dict()
        cert.description = "changed"
        cert.patch()
        listed = [c.to_dict() for c in Certificate.get_collection(connection=client, name="sdk")]
        assert listed and all("key" not in c for c in listed)
        assert listed[0]["description"] == "changed"


# -- a device group ---------------------------------------------------------------------------------

def stored_key(device: RunningDevice, name: str) -> str | None:
    """The key as device's store holds it (read-only, beside the running daemon)."""
    uri = f"{(device.data_dir / STORE_FILE).resolve().as_uri()}?mode=ro"
    with sqlite3.connect(uri, uri=True) as db:
        row = db.execute("SELECT body FROM objects WHERE kind='certificates' AND partition='Common' AND name=?",
                         (name,)).fetchone()
    return json.loads(row[0]).get("key") if row and row[0] else None


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path_factory.mktemp("certificates"))
    cluster.start("cert-1", "cert-2")
    try:
        cluster.form()
        yield cluster
    finally:
        cluster.close()


def test_the_key_replicates_and_is_never_shown_by_the_other_device(pair, ca):
    one, two = pair.nodes
    issued = ca.issue("group.example.com")
    assert create(one.api, "group", issued).status_code == 201
    wait_until(lambda: two.api.get("/api/certificates/Common/group").status_code == 200, 30,
               "the certificate to reach cert-2")
    assert stored_key(two.device, "group") == issued.key
    for path in ("/api/certificates/Common/group", "/api/certificates", "/api/certificates?fields=key"):
        assert_no_key(two.api.get(path).text, issued)
    renewed = ca.issue("group.example.com", days=500, private=issued.private)
    assert two.api.patch("/api/certificates/Common/group", json={"certificate": renewed.chain}).status_code == 200
    wait_until(lambda: one.api.get("/api/certificates/Common/group").json()["fingerprint"] == renewed.fingerprint,
               30, "the renewed certificate to reach cert-1")
    assert stored_key(one.device, "group") == issued.key
    for node in (one, two):
        assert_no_key(node.device.log_path.read_text(), issued)
