"""Certificate pinning: fetching a server's certificate, pinned SSL contexts (fingerprints:
`tandem.models.fingerprints`)."""

import socket
import ssl


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
