"""Pairing two clusters: the initiator's side (an admin created or re-keyed a relationship with the
remote's addresses) and the responder's (this cluster holds a pending relationship or an offer)."""

import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from tandem.errors import BadGateway, Conflict, Forbidden
from tandem.models.peering import Encryption, PeerAddress, PeerRecord
from tandem.peering import pake
from tandem.peering.records import Relationships
from tandem.peering.secure import PSK_SUPPORTED
from tandem.peering.wire import Channel, RemoteError, WireError

FAILURES_ALLOWED, FAILURE_WINDOW = 5, 60.0
"""Failed pairings from one host within the window, after which it is refused until the window passes."""


class ClusterDescription(BaseModel):
    """How a cluster describes itself when pairing (this one, or the remote one)."""

    uuid: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=63)
    addresses: list[PeerAddress] = Field(default_factory=list, max_length=64)


@dataclass
class Pairing:
    remote: ClusterDescription
    key: str
    encryption: Encryption


def _refusal(error: RemoteError) -> Exception:
    if error.code == "expired":
        return Forbidden(f"the remote cluster's offer has expired: {error}", target="authentication.passphrase")
    if error.code == "passphrase":
        return Forbidden(f"authentication failed: {error}", target="authentication.passphrase")
    return Conflict(f"the remote cluster refused: {error}", target="remote.ip_addresses")


async def pair_with(addresses: list[str], passphrase: str, proposed: Encryption, local: ClusterDescription,
                    rekey: bool = False) -> Pairing | None:
    """Pair with the cluster at `addresses` (the first that answers), or agree a new key with it
    (`rekey`). None if it holds nothing to pair with yet (its admin will pair from there); Forbidden
    for a wrong or expired passphrase; BadGateway if no address answers."""
    unreachable = []
    for address in addresses:
        try:
            channel = await Channel.open(address)
        except WireError as error:
            unreachable.append(str(error))
            continue
        try:
            offers = await channel.call({"type": "pair", "cluster": local.model_dump(), "encryption": proposed,
                                        "rekey": rekey})
            count = offers.get("count")
            if offers["type"] != "pair-offers" or not isinstance(count, int) or not 1 <= count <= 64:
                raise WireError("malformed answer to a pairing request")
            paired = await pake.initiate(channel, passphrase, count)
            encryption = paired.reply.get("encryption")
            if paired.reply["type"] != "paired" or encryption not in ("none", "tls-psk"):
                raise WireError("malformed end of pairing")
            return Pairing(ClusterDescription.model_validate(paired.reply.get("cluster")), paired.key, encryption)
        except RemoteError as error:
            if error.code == "none":
                return None
            raise _refusal(error) from None
        except pake.PairingFailed:
            raise Forbidden("authentication failed: the remote cluster holds no pending relationship with this "
                            "passphrase", target="authentication.passphrase") from None
        except (WireError, ValidationError) as error:
            unreachable.append(f"{address}: {error}")
        finally:
            await channel.close()
    raise BadGateway(f"cannot pair with the remote cluster: {'; '.join(unreachable)}", target="remote.ip_addresses")


def paired_record(record: PeerRecord, pairing: Pairing, relationships: Relationships) -> PeerRecord:
    """`record` once paired: the key agreed, the remote known, the passphrase forgotten."""
    name = record.name if record.name_given else relationships.free_name(pairing.remote.name, record.uuid)
    return record.model_copy(update={
        "key": pairing.key, "remote_uuid": pairing.remote.uuid, "remote_name": pairing.remote.name,
        "remote_addresses": record.remote_addresses or pairing.remote.addresses, "passphrase": None,
        "expires_at": None, "encryption_state": pairing.encryption, "name": name})


class Limiter:
    """Counts failed pairings per host, so that a passphrase cannot be guessed online at speed."""

    def __init__(self) -> None:
        self._failures: dict[str, deque[float]] = {}

    def blocked(self, host: str) -> bool:
        failures = self._failures.get(host)
        while failures and failures[0] < time.monotonic() - FAILURE_WINDOW:
            failures.popleft()
        return bool(failures) and len(failures) >= FAILURES_ALLOWED

    def failed(self, host: str) -> None:
        self._failures.setdefault(host, deque()).append(time.monotonic())


async def respond(channel: Channel, hello: dict[str, Any], relationships: Relationships,
                  local: ClusterDescription, limiter: Limiter) -> None:
    """Answer a pairing request against this cluster's pending relationships."""
    try:
        remote = ClusterDescription.model_validate(hello.get("cluster"))
    except ValidationError:
        return await channel.fail("malformed", "malformed pairing request")
    proposed = hello.get("encryption")
    if proposed not in ("none", "tls-psk"):
        return await channel.fail("malformed", "unknown encryption")
    if remote.uuid == local.uuid:
        return await channel.fail("self", "a cluster cannot peer with itself")
    if proposed == "tls-psk" and not PSK_SUPPORTED:
        return await channel.fail("encryption", "this cluster cannot use tls-psk (it needs Python 3.13)")
    pending = [r for r in relationships.all() if r.passphrase and r.remote_uuid in (None, remote.uuid)]
    paired = relationships.with_cluster(remote.uuid)
    if paired and not any(r.remote_uuid == remote.uuid for r in pending):
        if hello.get("rekey") is True:
            return await channel.fail("none", "no new passphrase is set here yet")
        return await channel.fail("already-peered", f"this cluster is already peered with yours as {paired.name}")
    now = time.time()
    live = sorted((r for r in pending if r.expires_at is None or r.expires_at > now),
                  key=lambda r: (r.remote_uuid is None, not set(r.remote_addresses) & set(remote.addresses)))
    if not live:
        if pending:
            return await channel.fail("expired", "the passphrase of this cluster's pending relationship expired")
        return await channel.fail("none", "this cluster holds no pending relationship")
    if limiter.blocked(channel.peer_host):
        return await channel.fail("refused", "too many failed attempts: try again in a minute")
    await channel.send({"type": "pair-offers", "count": len(live)})
    try:
        index, key = await pake.respond(channel, [r.passphrase or "" for r in live])
    except pake.PairingFailed:
        limiter.failed(channel.peer_host)
        return await channel.fail("passphrase", "the passphrase does not match")
    record = live[index]
    encryption: Encryption = "tls-psk" if "tls-psk" in (record.encryption_proposed, proposed) else "none"
    relationships.put(paired_record(record, Pairing(remote, key, encryption), relationships))
    await channel.send({"type": "paired", "cluster": local.model_dump(), "encryption": encryption})
