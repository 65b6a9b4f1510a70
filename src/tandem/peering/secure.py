"""Opening an authenticated session on a paired relationship.

With encryption `tls-psk` the connection is upgraded to TLS 1.3 keyed by the relationship's key
(the PSK identity is the client cluster's uuid): everything after the hello is encrypted, and only
a holder of the key completes the handshake. With `none` the two sides prove the key to each other
by HMAC over fresh nonces; the frames that follow travel in clear. Only then may frames be larger
than `wire.PREAUTH_MAX_FRAME`.
"""

import hashlib
import hmac
import secrets
import ssl
from collections.abc import Callable

from tandem.peering.wire import Channel, WireError

PSK_SUPPORTED = hasattr(ssl.SSLContext, "set_psk_client_callback")
"""TLS-PSK needs Python 3.13 or later (ssl's PSK callbacks)."""


class AuthenticationFailed(WireError):
    """The other side does not hold the relationship's key."""


def client_context(identity: str, key: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the PSK authenticates the server: no certificate is involved
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.set_psk_client_callback(lambda _hint: (identity, bytes.fromhex(key)))  # type: ignore[attr-defined]
    return context


def server_context(key_for: Callable[[str], str | None]) -> ssl.SSLContext:
    """A server context that accepts the client whose identity `key_for` knows, with that key."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3

    def lookup(identity: str | None) -> bytes:
        key = key_for(identity or "")
        return bytes.fromhex(key) if key else b""

    context.set_psk_server_callback(lookup)  # type: ignore[attr-defined]
    return context


def _proof(key: str, label: bytes, client_nonce: str, server_nonce: str) -> str:
    return hmac.new(bytes.fromhex(key), label + client_nonce.encode() + server_nonce.encode(),
                    hashlib.sha256).hexdigest()


async def client_session(channel: Channel, cluster_uuid: str, key: str, encryption: str) -> None:
    """Open a session as `cluster_uuid`; AuthenticationFailed if the server does not prove the key."""
    nonce = secrets.token_hex(16)
    reply = await channel.call({"type": "session", "cluster": cluster_uuid, "encryption": encryption,
                                "nonce": nonce})
    if encryption == "tls-psk":
        if reply["type"] != "starttls":
            raise WireError(f"expected starttls, got {reply['type']!r}")
        try:
            await channel.start_tls(client_context(cluster_uuid, key))
        except WireError as error:
            raise AuthenticationFailed(f"the TLS-PSK handshake failed (keys differ?): {error}") from None
    else:
        server_nonce = str(reply.get("nonce", ""))
        if reply["type"] != "challenge" or not hmac.compare_digest(
                str(reply.get("proof", "")), _proof(key, b"server", nonce, server_nonce)):
            raise AuthenticationFailed("the remote cluster did not prove the relationship's key")
        await channel.send({"type": "proof", "proof": _proof(key, b"client", nonce, server_nonce)})
    ready = await channel.receive()
    if ready["type"] != "ready":
        raise WireError(f"expected ready, got {ready['type']!r}")
    channel.authenticated()


async def server_session(channel: Channel, client_nonce: str, key: str, encryption: str,
                         key_for: Callable[[str], str | None]) -> None:
    """The server's side of `client_session`, once the hello named a relationship this side holds."""
    if encryption == "tls-psk":
        await channel.send({"type": "starttls"})
        try:
            await channel.start_tls(server_context(key_for))
        except WireError as error:
            raise AuthenticationFailed(f"the TLS-PSK handshake failed: {error}") from None
    else:
        nonce = secrets.token_hex(16)
        answer = await channel.call({"type": "challenge", "nonce": nonce,
                                     "proof": _proof(key, b"server", client_nonce, nonce)})
        if answer["type"] != "proof" or not hmac.compare_digest(
                str(answer.get("proof", "")), _proof(key, b"client", client_nonce, nonce)):
            raise AuthenticationFailed("the client did not prove the relationship's key")
    channel.authenticated()
    await channel.send({"type": "ready"})
