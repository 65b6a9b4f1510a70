"""A CA-signed management certificate installed on a member of a pair, renewed and reverted, through the CLI and
the API: clients verify it by the CA bundle or by its pin, the peer learns it before it is presented, and the link
between the members never drops."""

import json
import ssl
from pathlib import Path

import httpx
from cli_helpers import run_tandem, subprocess_env
from cluster_helpers import Cluster, Node, check, error_of, pool_names
from cryptography.hazmat.primitives.asymmetric import rsa
from prometheus_client.parser import text_string_to_metric_families

from devices import ADMIN_PASSWORD
from pki import TestCA
from waiting import wait_until


def tandem(*args: str, ok: bool = True) -> str:
    result = run_tandem(*args, env=subprocess_env(TANDEM_PASSWORD=ADMIN_PASSWORD, COLUMNS="200"))
    assert (result.returncode == 0) == ok, (result.returncode, result.stdout, result.stderr)
    return result.stdout if ok else result.stderr


def links_changed(node: Node) -> int:
    """How many peer connections the device has accepted or seen close so far (its log says each)."""
    log = node.device.log_path.read_text(errors="replace")
    return log.count("connection open") + log.count("connection closed")


def record_of(by: Node, name: str) -> dict:
    return check(by.api.get(f"/api/trust/devices/{name}"), 200).json()


def write(directory: Path, **files: str) -> dict[str, Path]:
    paths = {}
    for name, text in files.items():
        paths[name] = directory / f"{name}.pem"
        paths[name].write_text(text)
    return paths


def test_install_renew_and_revert_a_ca_signed_certificate(formed_pair: Cluster, tmp_path: Path) -> None:
    dev1, dev2 = formed_pair["dev-1"], formed_pair["dev-2"]
    ca = TestCA()
    identity = dev2.device.fingerprint
    first = ca.issue("dev-2", ip_addresses=("127.0.0.1",), rsa_key=True)
    files = write(tmp_path, ca=ca.pem, chain=first.chain, key=first.key)
    changed = links_changed(dev1) + links_changed(dev2)
    url = dev2.device.url

    shown = json.loads(tandem("--url", url, "--fingerprint", identity, "-o", "json", "device", "certificate",
                              "install", "--cert", str(files["chain"]), "--key", str(files["key"])))
    assert (shown["source"], shown["fingerprint"], shown["peers_not_told"]) == ("installed", first.fingerprint, [])
    # dev-1 had dev-2's new fingerprint before dev-2 presented it.
    assert record_of(dev1, "dev-2")["management_fingerprint"] == first.fingerprint
    assert "fingerprint_mismatch" in tandem("--url", url, "--fingerprint", identity, "-o", "json", "device", "show",
                                            ok=False)
    device = json.loads(tandem("--url", url, "--ca-file", str(files["ca"]), "-o", "json", "device", "show"))
    assert (device["fingerprint"], device["management_fingerprint"]) == (identity, first.fingerprint)
    assert "both say how to verify" in tandem("--url", url, "--ca-file", str(files["ca"]), "--fingerprint",
                                              first.fingerprint, "device", "show", ok=False)
    with httpx.Client(verify=ssl.create_default_context(cafile=files["ca"])) as client:  # any TLS client, names checked
        assert client.get(f"{url}/api/health").status_code == 200
    expiry = [sample for family in text_string_to_metric_families(check(dev2.api.get("/metrics")).text)
              for sample in family.samples if sample.name == "tandem_management_certificate_expiry_timestamp_seconds"]
    assert [(s.labels, s.value) for s in expiry] == [
        ({"source": "installed", "fingerprint": first.fingerprint}, first.not_after.timestamp())]

    # Renewed before expiry (a new key too): the link between the members stays; changes still flow.
    second = ca.issue("dev-2", ip_addresses=("127.0.0.1",))
    renewed = check(dev2.api.put("/api/device/certificate", json={"certificate": second.chain, "key": second.key}))
    assert renewed.json()["fingerprint"] == second.fingerprint
    check(dev1.api.post("/api/pools", json={"name": "after-renewal"}), 201)
    formed_pair.wait_converged()
    formed_pair.wait_in_sync()
    assert "after-renewal" in pool_names(dev2.config())
    assert links_changed(dev1) + links_changed(dev2) == changed, "a peer link was dropped"

    # A restart presents the installed certificate still.
    dev2.close()
    dev2.start()
    formed_pair.wait_in_sync()
    device = json.loads(tandem("--url", url, "--ca-file", str(files["ca"]), "-o", "json", "device", "show"))
    assert device["management_fingerprint"] == second.fingerprint

    reverted = json.loads(tandem("--url", url, "--ca-file", str(files["ca"]), "-o", "json", "device",
                                 "certificate", "revert"))
    assert (reverted["source"], reverted["fingerprint"]) == ("identity", identity)
    wait_until(lambda: record_of(dev1, "dev-2")["management_fingerprint"] == "", 2, "dev-1 told of the revert")
    assert json.loads(tandem("--url", url, "--fingerprint", identity, "-o", "json", "device", "show"))["name"] == \
        "dev-2"


def test_a_certificate_that_cannot_serve_is_refused_and_changes_nothing(formed_pair: Cluster) -> None:
    dev2 = formed_pair["dev-2"]
    ca = TestCA()
    good, other = ca.issue("dev-2"), ca.issue("dev-2")
    expired = ca.issue("dev-2", days=-1, starts=-30)
    weak = ca.issue("dev-2", private=rsa.generate_private_key(65537, 1024))  # OpenSSL's level 2 refuses it
    before = check(dev2.api.get("/api/device/certificate"), 200).json()
    cases = [
        ({"certificate": good.chain, "key": other.key}, "key", "does not match"),
        ({"certificate": expired.chain, "key": expired.key}, "certificate", "expired"),
        ({"certificate": good.leaf + TestCA().pem, "key": good.key}, "certificate", "not issued by the next"),
        ({"certificate": "not PEM", "key": good.key}, "certificate", "PEM"),
        ({"certificate": weak.chain, "key": weak.key}, "certificate", "will not serve"),
    ]
    for body, target, message in cases:
        refused = dev2.api.put("/api/device/certificate", json=body)
        assert refused.status_code == 422 and error_of(refused)["target"] == target, refused.text
        assert message in error_of(refused)["message"] and "PRIVATE" not in refused.text
    assert check(dev2.api.get("/api/device/certificate"), 200).json() == before
    check(dev2.api.post("/api/users", json={"name": "reader", "role": "auditor", "password": "reader-pass"}), 201)
    token = check(dev2.api.post("/api/auth/login", json={"username": "reader", "password": "reader-pass"})).json()
    refused = httpx.put(f"{dev2.device.url}/api/device/certificate", verify=False,
                        json={"certificate": good.chain, "key": good.key},
                        headers={"Authorization": f"Bearer {token['token']}"})
    assert refused.status_code == 403, refused.text
