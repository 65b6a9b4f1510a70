"""Fingerprint parsing and certificate pinning against a local HTTPS server (no tandem daemon)."""

import datetime
import http.server
import json
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from backends import http_server
from tandem.models.fingerprints import format_fingerprint, normalize_fingerprint
from tandem.sdk import Client, TandemError
from tandem.sdk.tls import pinned_context
from tandem.sdk.transport import ConnectionPool

HEX = "0123456789abcdef" * 4


@pytest.mark.parametrize(
    "text",
    [
        HEX,
        HEX.upper(),
        "sha256:" + HEX,
        "SHA256:" + HEX.upper(),
        ":".join(HEX[i : i + 2] for i in range(0, 64, 2)),
        "sha256:" + ":".join(HEX[i : i + 2] for i in range(0, 64, 2)).upper(),
        f"  {HEX}\n",
    ],
)
def test_normalize_fingerprint_accepts_every_form(text: str) -> None:
    assert normalize_fingerprint(text) == HEX


@pytest.mark.parametrize("text", ["", "sha256:", HEX[:-2], HEX + "00", "zz" + HEX[2:], "md5:" + HEX])
def test_normalize_fingerprint_refuses_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        normalize_fingerprint(text)


def test_format_fingerprint_is_the_device_display_form() -> None:
    assert format_fingerprint("sha256:" + HEX.upper()) == bytes.fromhex(HEX).hex(":")


def test_bad_fingerprint_is_a_tandem_error() -> None:
    with pytest.raises(TandemError) as err:
        Client("https://127.0.0.1:1", fingerprint="nope")
    assert err.value.code == "bad_fingerprint"


def test_fingerprint_needs_https() -> None:
    with pytest.raises(TandemError) as err:
        Client("http://127.0.0.1:1", fingerprint=HEX)
    assert err.value.code == "bad_url"


# --- a small HTTPS server with a self-signed certificate ------------------------------------


def _certificate(tmp: Path, *, ca: bool) -> tuple[Path, Path, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "device-under-test")])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("device-under-test")]), critical=False)
    )
    cert = builder.sign(key, hashes.SHA256())
    cert_path, key_path = tmp / f"cert-{ca}.pem", tmp / f"key-{ca}.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path, cert.fingerprint(hashes.SHA256()).hex(":")


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    requests: list[str]

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.requests.append(f"GET {self.path}")
        if self.headers.get("authorization") != "Bearer t0k3n":
            self._answer(401, {"error": {"code": "unauthorized", "message": "log in", "target": None}})
        else:
            self._answer(200, {"name": "device-under-test"})

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", 0))
        self.rfile.read(length)
        self.requests.append(f"POST {self.path}")
        self._answer(200, {"token": "t0k3n", "expires_at": "2999-01-01T00:00:00Z", "username": "admin",
                           "role": "admin"})

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(params=[True, False], ids=["ca-cert", "leaf-cert"])
def https_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str, list[str]]]:
    cert, key, fingerprint = _certificate(tmp_path, ca=request.param)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    seen: list[str] = []
    with http_server(type("Handler", (_Handler,), {"requests": seen}), tls=context) as url:
        yield url, fingerprint, seen


def test_right_fingerprint_connects(https_server: tuple[str, str, list[str]]) -> None:
    url, fingerprint, seen = https_server
    for form in (fingerprint, "sha256:" + fingerprint.upper(), fingerprint.replace(":", "")):
        client = Client(url, "admin", "secret", fingerprint=form)
        assert client.request("GET", "/api/device") == {"name": "device-under-test"}
        client.close()
    assert seen[:2] == ["POST /api/auth/login", "GET /api/device"]


def test_wrong_fingerprint_fails_before_credentials(https_server: tuple[str, str, list[str]]) -> None:
    url, fingerprint, seen = https_server
    first = "ff" if fingerprint.startswith("00") else "00"  # differs from the real one in its first byte
    wrong = first + fingerprint.replace(":", "")[2:]
    client = Client(url, "admin", "secret", fingerprint=wrong)
    with pytest.raises(TandemError) as err:
        client.device()
    assert err.value.code == "fingerprint_mismatch"
    assert fingerprint in err.value.message
    assert seen == []


def test_default_verification_refuses_a_self_signed_certificate(
    https_server: tuple[str, str, list[str]],
) -> None:
    url, _, seen = https_server
    with pytest.raises(TandemError) as err:
        Client(url, "admin", "secret").device()
    assert err.value.code == "connection_error"
    assert url in err.value.message
    assert seen == []


def test_verify_false_connects(https_server: tuple[str, str, list[str]]) -> None:
    url, _, _ = https_server
    with Client(url, "admin", "secret", verify=False) as client:
        assert client.device() == {"name": "device-under-test"}


def test_pinned_context_refuses_another_certificate(
    https_server: tuple[str, str, list[str]], tmp_path: Path
) -> None:
    """The pin holds for every connection, not only the first: a swapped certificate is refused."""
    url, fingerprint, _ = https_server
    client = Client(url, "admin", "secret", fingerprint=fingerprint)
    assert client.device()
    other = tmp_path / "other"
    other.mkdir()
    other_cert, _, _ = _certificate(other, ca=True)
    client.close()
    client._pool = ConnectionPool(url, pinned_context(ssl.PEM_cert_to_DER_cert(other_cert.read_text())), 5)
    with pytest.raises(TandemError) as err:
        client.device()
    assert err.value.code == "connection_error"
    assert "CERTIFICATE_VERIFY_FAILED" in err.value.message
