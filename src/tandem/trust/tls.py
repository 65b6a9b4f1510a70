"""TLS contexts of the peer channel: both sides present their device certificate, both pin."""

import ssl

from tandem.models.fingerprints import fingerprint
from tandem.trust.identity import Identity


def server_context(identity: Identity, trusted_certs: list[str]) -> ssl.SSLContext:
    """Serve with this device's certificate and require a client certificate among `trusted_certs`.
    More certificates can be trusted later with `trust(context, pem)`; the fingerprint of every
    client is checked again against the current trust list when it connects."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(identity.cert_path, identity.key_path)
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    for pem in trusted_certs:
        trust(context, pem)
    return context


def trust(context: ssl.SSLContext, cert_pem: str) -> None:
    context.load_verify_locations(cadata=cert_pem)


def client_context(identity: Identity, pinned_cert: str) -> ssl.SSLContext:
    """Dial a device presenting this device's certificate and accepting only `pinned_cert`."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False  # the certificate itself is pinned: names do not matter
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    context.load_verify_locations(cadata=pinned_cert)
    context.load_cert_chain(identity.cert_path, identity.key_path)
    return context


def peer_fingerprint(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> str | None:
    """The SHA-256 fingerprint of the certificate the other side presented."""
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    return fingerprint(der) if der else None
