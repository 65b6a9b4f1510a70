"""End to end: `tandem lab up --engine haproxy` also makes an HTTP virtual server with host rules to two
pools and an HTTPS one with a certificate from a CA the lab makes, and says how to curl them. Real
`tandem serve` processes with HAProxy, real backends; one lab for the module.
"""

import http.client
import shutil
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import LabRun
from cryptography import x509
from cryptography.hazmat.primitives import hashes

pytestmark = pytest.mark.skipif(shutil.which("haproxy") is None, reason="needs the haproxy binary")

HTTP_PORT, HTTPS_PORT = 8081, 8082
"""The demo's HTTP and HTTPS virtual servers, beside its tcp one on 8080 (the default)."""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabRun]:
    also = ((100, 8080), (100, HTTP_PORT), (100, HTTPS_PORT))
    with LabRun.started(tmp_path_factory.mktemp("tandem-l7-lab"), "--engine", "haproxy", also=also) as lab:
        yield lab


def vip(lab: LabRun) -> str:
    return lab.base.rsplit(".", 1)[0] + ".100"


def get(address: str, port: int, host: str | None = None, context: ssl.SSLContext | None = None,
        sni: str | None = None) -> tuple[str, bytes | None]:
    """The first line of the body of `GET /` (with `Host: host`; over TLS with `context` and SNI `sni`), and
    the certificate the server showed (DER; None over plain HTTP)."""
    connection = http.client.HTTPConnection(address, port, timeout=5)
    served = None
    try:
        if context is not None:
            connection.sock = context.wrap_socket(socket.create_connection((address, port), timeout=5),
                                                  server_hostname=sni or address)
            served = connection.sock.getpeercert(binary_form=True)
        connection.request("GET", "/", headers={"Host": host} if host else {})
        response = connection.getresponse()
        body = response.read().decode()
    finally:
        connection.close()
    assert response.status == 200, (response.status, body)
    return body.split("\n", 1)[0], served


def test_lab_up_says_what_to_curl(lab: LabRun) -> None:
    out, address = lab.up.stdout, vip(lab)
    assert f"curl -H 'Host: app.lab' http://{address}:{HTTP_PORT}/" in out
    assert f"curl -H 'Host: api.lab' http://{address}:{HTTP_PORT}/" in out
    assert f"curl -k https://{address}:{HTTPS_PORT}/" in out
    assert f"--cacert {lab.dir / 'lab-ca.pem'} --resolve api.lab:{HTTPS_PORT}:{address}" in out
    assert "not served" not in out
    names = {v["name"]: v for v in lab.json("virtual", "list")}
    assert (names["www-http"]["protocol"], names["www-http"]["port"]) == ("http", HTTP_PORT)
    assert (names["www-https"]["protocol"], names["www-https"]["certificates"]) == ("https", ["lab-tls"])


def test_host_rules_route_to_their_pools(lab: LabRun) -> None:
    address = vip(lab)
    assert {get(address, HTTP_PORT, "app.lab")[0] for _ in range(4)} == {"backend-1"}
    assert {get(address, HTTP_PORT, "api.lab")[0] for _ in range(4)} == {"backend-2"}
    assert {get(address, HTTP_PORT, "other.lab")[0] for _ in range(6)} == {"backend-1", "backend-2"}  # pool web


def test_https_terminates_with_the_lab_certificate(lab: LabRun) -> None:
    address = vip(lab)
    fingerprint = lab.json("certificate", "show", "lab-tls")["fingerprint"]
    verified = ssl.create_default_context(cafile=str(Path(lab.dir) / "lab-ca.pem"))
    answer, served = get(address, HTTPS_PORT, "api.lab", verified, sni="api.lab")
    assert answer == "backend-2"
    assert served is not None
    assert x509.load_der_x509_certificate(served).fingerprint(hashes.SHA256()).hex(":") == fingerprint.lower()
    unverified = ssl.create_default_context()  # as `curl -k`
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    assert {get(address, HTTPS_PORT, None, unverified)[0] for _ in range(6)} == {"backend-1", "backend-2"}
    with pytest.raises(ssl.SSLCertVerificationError):
        get(address, HTTPS_PORT, None, ssl.create_default_context())  # not a publicly trusted certificate
