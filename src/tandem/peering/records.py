"""The peer relationships this cluster keeps in its trust domain, and how the API shows them."""

import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from tandem.errors import NotFound
from tandem.models.peering import PeerRecord
from tandem.trust.domain import Domain

MAX_REMOTE_MEMBERS = 64


@dataclass(frozen=True)
class MemberHealth:
    """How one member of a cluster is, as its cluster tells a peer (None: not told, or not as a string)."""

    server_name: str | None = None
    status: str | None = None
    message: str | None = None

    def told(self) -> dict[str, str]:
        """The fields told, as the API shows a remote member."""
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class ClusterStatus:
    """What a cluster tells its peers of itself on every status exchange: who it is, how its members are."""

    uuid: str
    name: str
    members: tuple[MemberHealth, ...]

    def frame(self) -> dict[str, Any]:
        """Its wire form (a member's field not told is null)."""
        return {"uuid": self.uuid, "name": self.name, "members": [asdict(m) for m in self.members]}


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def told_members(reply: dict[str, Any]) -> tuple[MemberHealth, ...]:
    """The remote members' health from a status answer, kept to known fields of the right types."""
    cluster = reply.get("cluster")
    members = cluster.get("members") if isinstance(cluster, dict) else None
    if not isinstance(members, list):
        return ()
    return tuple(MemberHealth(_text(m.get("server_name")), _text(m.get("status")), _text(m.get("message")))
                 for m in members[:MAX_REMOTE_MEMBERS] if isinstance(m, dict))


@dataclass(frozen=True)
class PeerStatus:
    """A relationship's state as this device sees it, since when, and the remote members it hears of."""

    state: str
    update_time: str | None
    message: str
    remote_members: tuple[MemberHealth, ...] = ()


def iso(timestamp: float | None) -> str | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


class Relationships:
    """Reads and writes of the relationship records (every member of this cluster holds them all)."""

    def __init__(self, domain: Domain) -> None:
        self.domain = domain

    def all(self) -> list[PeerRecord]:
        return self.domain.peer_records()

    def find(self, uuid: str) -> PeerRecord | None:
        return self.domain.peer_record(uuid)

    def get(self, uuid: str) -> PeerRecord:
        record = self.find(uuid)
        if record is None:
            raise NotFound(f"no cluster peer {uuid!r}", target=uuid)
        return record

    def named(self, name_or_uuid: str) -> PeerRecord:
        """A relationship by its uuid or its name."""
        record = self.find(name_or_uuid) or next((r for r in self.all() if r.name == name_or_uuid), None)
        if record is None:
            raise NotFound(f"no cluster peer named {name_or_uuid!r}", target=name_or_uuid)
        return record

    def with_cluster(self, cluster_uuid: str) -> PeerRecord | None:
        """The relationship with the remote cluster `cluster_uuid`, if paired."""
        return next((r for r in self.all() if r.remote_uuid == cluster_uuid and r.key), None)

    def put(self, record: PeerRecord) -> None:
        self.domain.put_peer_record(record)

    def delete(self, uuid: str) -> None:
        self.domain.delete_peer_record(uuid)

    def free_name(self, wanted: str, uuid: str) -> str:
        """`wanted`, or with a suffix if another relationship has that name."""
        taken = {r.name for r in self.all() if r.uuid != uuid}
        name, n = wanted, 2
        while name in taken:
            name, n = f"{wanted[:58]}-{n}", n + 1
        return name

    def mirrored_in(self, partition: str) -> PeerRecord | None:
        """The relationship whose peer mirrors `partition` into this cluster, if any."""
        return next((r for r in self.all() if partition in r.mirrored_in), None)


def authentication_state(record: PeerRecord, now: float | None = None) -> str:
    """`ok` (a key is agreed), `absent` (waiting for the other side), `expired` (the passphrase ran out)."""
    if record.key:
        return "ok"
    if record.expires_at is not None and (now or time.time()) >= record.expires_at:
        return "expired"
    return "absent"


DEFAULT_IPSPACE = {"name": "Default", "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, "tandem:ipspace:Default"))}
"""The one ipspace, as ONTAP shows a reference."""


def view(record: PeerRecord, status: PeerStatus, local_network: list[str]) -> dict[str, Any]:
    """The API's shape of a relationship (ONTAP's field names; the passphrase is never shown here)."""
    return {
        "uuid": record.uuid,
        "name": record.name,
        "remote": {"name": record.remote_name, "uuid": record.remote_uuid,
                   "ip_addresses": record.remote_addresses, "members": [m.told() for m in status.remote_members]},
        "authentication": {"in_use": authentication_state(record), "expiry_time": iso(record.expires_at),
                           "rekey_pending": bool(record.key and record.passphrase)},
        "encryption": {"proposed": record.encryption_proposed, "state": record.encryption_state},
        "status": {"state": status.state, "update_time": status.update_time, "message": status.message},
        "ipspace": dict(DEFAULT_IPSPACE),
        "local_network": {"ip_addresses": local_network,  # and as ONTAP lists its intercluster interfaces:
                          "interfaces": [{"ip_address": address} for address in local_network]},
        "initial_allowed_partitions": record.initial_allowed_partitions,
        "mirrors": record.mirrors,
        "mirrored_in": record.mirrored_in,
    }
