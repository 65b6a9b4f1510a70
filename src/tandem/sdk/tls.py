"""Certificate pinning: fingerprint parsing, fetching a server's certificate, pinned SSL contexts."""

import hashlib
import re
import socket
import ssl

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def normalize_fingerprint(fingerprint: str) -> str:
    """`sha256:AB:CD...`, `ab:cd:...` or `abcd...` (any case) → 64 lowercase hex digits.

    Raises ValueError when it is not a SHA-256 fingerprint.
    """
    text = fingerprint.strip().lower()
    if text.startswith("sha256:"):
        text = text[len("sha256:") :]
    elif text.startswith("sha256="):
        text = text[len("sha256=") :]
    digits = text.replace(":", "").replace(" ", "")
    if not _HEX64.match(digits):
        raise ValueError(
            f"{fingerprint!r} is not a SHA-256 fingerprint (64 hex digits, optionally in ':'-separated "
            "pairs, optionally prefixed with 'sha256:')"
        )
    return digits


def format_fingerprint(digits: str) -> str:
    """64 hex digits → the device's display form: lowercase pairs joined by ':'."""
    digits = normalize_fingerprint(digits)
    return ":".join(digits[i : i + 2] for i in range(0, len(digits), 2))


def fingerprint_of(der: bytes) -> str:
    """The SHA-256 fingerprint (64 lowercase hex digits) of a DER-encoded certificate."""
    return hashlib.sha256(der).hexdigest()


def fetch_certificate(host: str, port: int, timeout: float) -> bytes:
    """The DER certificate `host:port` presents, read without verifying it (to compare with a pin)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((host, port), timeout=timeout) as sock,
        context.wrap_socket(sock, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    if not der:
        raise ssl.SSLError(f"{host}:{port} presented no certificate")
    return der


def pinned_context(der: bytes) -> ssl.SSLContext:
    """An SSL context that trusts exactly this certificate (as its only anchor) and ignores host names."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    # Let the pinned certificate be the anchor even when it is not self-issued.
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    context.load_verify_locations(cadata=ssl.DER_cert_to_PEM_cert(der))
    return context
