"""Pairing: two clusters prove they know the same passphrase with SPAKE2 and agree on a key.

The passphrase never crosses the wire, not even hashed: each side sends one SPAKE2 message, from
which an eavesdropper learns nothing and an active attacker can test a single guess per attempt.
Each side then proves it holds the agreed key (an HMAC over both messages) before the key is used.
The responder may hold several pending relationships (offers); it tries them one at a time, each
with a fresh exchange, until one matches or none is left.
"""

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from spake2 import SPAKE2_A, SPAKE2_B
from spake2.spake2 import SPAKEError

from tandem.peering.wire import Channel, WireError

ID_INITIATOR, ID_RESPONDER = b"tandem-peer-initiator", b"tandem-peer-responder"


class PairingFailed(Exception):
    """No pending relationship of the responder matched the passphrase."""


def _mac(key: bytes, label: bytes, transcript: bytes) -> str:
    return hmac.new(key, label + transcript, hashlib.sha256).hexdigest()


def relationship_key(shared: bytes) -> str:
    """The relationship's key (hex), derived from the SPAKE2 result: the TLS-PSK and the proof key."""
    return HKDF(hashes.SHA256(), 32, salt=None, info=b"tandem cluster peer key").derive(shared).hex()


def _decode(message: dict[str, Any], field: str) -> bytes:
    try:
        return base64.b64decode(str(message.get(field, "")), validate=True)
    except ValueError:
        raise WireError(f"malformed {field}") from None


@dataclass
class Paired:
    key: str
    reply: dict[str, Any]
    """The responder's last message: its cluster's description."""


async def initiate(channel: Channel, passphrase: str, attempts: int) -> Paired:
    """Run the exchange against each of the responder's `attempts` candidates; PairingFailed if none matches."""
    for attempt in range(attempts):
        spake = SPAKE2_A(passphrase.encode(), idA=ID_INITIATOR, idB=ID_RESPONDER)
        outbound = spake.start()
        reply = await channel.call({"type": "pake", "message": base64.b64encode(outbound).decode()})
        inbound = _decode(reply, "message")
        try:
            shared = spake.finish(inbound)
        except SPAKEError as error:
            raise WireError(f"bad SPAKE2 message: {error}") from None
        transcript = outbound + inbound
        if not hmac.compare_digest(str(reply.get("confirm", "")), _mac(shared, b"responder", transcript)):
            await channel.send({"type": "pake-next" if attempt + 1 < attempts else "pake-fail"})
            continue
        answer = await channel.call({"type": "confirm", "confirm": _mac(shared, b"initiator", transcript)})
        return Paired(relationship_key(shared), answer)
    raise PairingFailed("the passphrase does not match")


async def respond(channel: Channel, passphrases: list[str]) -> tuple[int, str]:
    """Answer the initiator's exchanges, one candidate passphrase after the other; the index of the
    one that matched and the key. PairingFailed if none did."""
    for index, passphrase in enumerate(passphrases):
        request = await channel.receive()
        if request["type"] != "pake":
            raise WireError(f"expected a SPAKE2 message, got {request['type']!r}")
        inbound = _decode(request, "message")
        spake = SPAKE2_B(passphrase.encode(), idA=ID_INITIATOR, idB=ID_RESPONDER)
        outbound = spake.start()
        try:
            shared = spake.finish(inbound)
        except SPAKEError as error:
            raise WireError(f"bad SPAKE2 message: {error}") from None
        transcript = inbound + outbound
        await channel.send({"type": "pake", "message": base64.b64encode(outbound).decode(),
                            "confirm": _mac(shared, b"responder", transcript)})
        answer = await channel.receive()
        if answer["type"] == "pake-next" and index + 1 < len(passphrases):
            continue
        if answer["type"] != "confirm" or not hmac.compare_digest(
                str(answer.get("confirm", "")), _mac(shared, b"initiator", transcript)):
            break
        return index, relationship_key(shared)
    raise PairingFailed("the passphrase does not match")
