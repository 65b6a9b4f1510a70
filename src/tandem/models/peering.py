"""Models of cluster peering (ONTAP style): the request bodies of /api/cluster/peers and the stored record."""

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from tandem.models.fields import Name, parse_host_port

INTERCLUSTER_PORT = 11104
"""The port of a remote address given without one (ONTAP's intercluster port)."""
MAX_EXPIRY = timedelta(days=7)
DEFAULT_EXPIRY = "PT1H"
Encryption = Literal["none", "tls-psk"]

_DURATION = re.compile(r"^P(?:(?P<weeks>\d+)W|(?:(?P<days>\d+)D)?(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?"
                       r"(?:(?P<seconds>\d+)S)?)?)$")


def parse_duration(text: str) -> timedelta:
    """An ISO 8601 duration `PnDTnHnMnS` or `PnW` (zero fields may be dropped); ValueError otherwise."""
    match = _DURATION.match(text)
    if match is None or text in ("P", "PT") or text.endswith("T"):
        raise ValueError(f"{text!r} is not an ISO 8601 duration such as PT2H or P3D")
    parts = {k: int(v) for k, v in match.groupdict().items() if v is not None}
    return timedelta(**parts)


def expires_in(text: str, now: datetime | None = None) -> timedelta:
    """How long a passphrase given `expiry_time: text` is valid: an ISO 8601 duration (`PT2H`), or the date-time
    it expires at (`2026-12-02T10:00:00Z`, or `12/02/2026 10:00:00` as in ONTAP's examples; without a zone, UTC),
    as later ONTAP releases take; ValueError if neither."""
    if text.startswith("P"):
        return parse_duration(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        try:  # the form of ONTAP's own examples, "05/26/2021 12:34:56" (taken as UTC)
            moment = datetime.strptime(text, "%m/%d/%Y %H:%M:%S")
        except ValueError:
            raise ValueError(f"{text!r} is neither an ISO 8601 duration such as PT2H or P3D nor a date-time such as"
                             " 2026-12-02T10:00:00Z") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)) - (now or datetime.now(UTC))


def _expiry(text: str) -> str:
    duration = expires_in(text)
    if duration <= timedelta(0):
        raise ValueError("expiry_time must be later than now" if not text.startswith("P") else
                         "expiry_time must be longer than zero")
    if duration > MAX_EXPIRY:
        raise ValueError(f"expiry_time {text} is beyond 7 days: a passphrase is valid for at most 7 days")
    return text


ExpiryTime = Annotated[str, StringConstraints(max_length=40), AfterValidator(_expiry)]


def _peer_address(value: str) -> str:
    """`ADDR:PORT`, or a plain address as ONTAP takes them (IPv4, or IPv6 in brackets: `fd00::1:7444` stays an
    address and a port) on the intercluster port."""
    if (value.startswith("[") and value.endswith("]")) or ("." in value and ":" not in value):
        value = f"{value}:{INTERCLUSTER_PORT}"
    host, port = parse_host_port(value)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


PeerAddress = Annotated[str, StringConstraints(strict=True, max_length=70), AfterValidator(_peer_address)]
"""The address:port of a remote device's intercluster listener (`local_network` on the remote shows them)."""
Passphrase = Annotated[str, StringConstraints(min_length=8, max_length=256)]


class Remote(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ip_addresses: list[PeerAddress] = Field(min_length=1, max_length=16)


class Authentication(BaseModel):
    model_config = ConfigDict(extra="forbid")

    passphrase: Passphrase | None = None
    generate_passphrase: bool = False
    expiry_time: ExpiryTime | None = None
    in_use: Literal["ok", "absent"] | None = None
    """Accepted for ONTAP compatibility; the state is the server's to tell."""

    @model_validator(mode="after")
    def _one_secret(self) -> Self:
        if self.passphrase is not None and self.generate_passphrase:
            raise ValueError("give a passphrase or generate_passphrase, not both")
        return self


class EncryptionProposal(BaseModel):
    model_config = ConfigDict(extra="forbid")

    proposed: Encryption


def _named(value: Any) -> Any:
    """ONTAP's object form of a reference (`{"name": "Default"}`, `{"name": "svm1", "uuid": ...}`): its name."""
    if isinstance(value, dict) and set(value) <= {"name", "uuid"} and "name" in value:
        return value["name"]
    return value


def _named_each(value: Any) -> Any:
    return [_named(item) for item in value] if isinstance(value, list) else value


AllowedPartitions = Annotated[list[Name], BeforeValidator(_named_each), Field(max_length=1000)]
"""Partitions the peer may mirror: names, or ONTAP's `initial_allowed_svms` objects (`{"name": ...}`)."""
PARTITIONS_ALIASES = AliasChoices("initial_allowed_partitions", "initial_allowed_svms")


class PeerCreate(BaseModel):
    """POST /api/cluster/peers: an address and a passphrase, or an offer (generate_passphrase alone)."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    remote: Remote | None = None
    authentication: Authentication | None = None
    encryption: EncryptionProposal | None = None
    ipspace: Annotated[str | None, BeforeValidator(_named), Field(max_length=64)] = None
    """`Default` (the only one), as a name or ONTAP's `{"name": "Default"}`."""
    initial_allowed_partitions: AllowedPartitions = Field(default_factory=list, validation_alias=PARTITIONS_ALIASES)
    local_network: dict | None = None


class PeerPatch(BaseModel):
    """PATCH /api/cluster/peers/{uuid}: rotate the passphrase, change addresses or the proposed encryption."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    remote: Remote | None = None
    authentication: Authentication | None = None
    encryption: EncryptionProposal | None = None
    initial_allowed_partitions: AllowedPartitions | None = Field(None, validation_alias=PARTITIONS_ALIASES)


class PeerRecord(BaseModel):
    """One peer relationship as the trust domain keeps it (every member of this cluster holds it)."""

    uuid: str = Field(min_length=1, max_length=64)
    name: Name
    name_given: bool = False
    remote_addresses: list[str] = Field(default_factory=list, max_length=16)
    remote_name: str | None = Field(None, max_length=64)
    remote_uuid: str | None = Field(None, max_length=64)
    passphrase: str | None = Field(None, max_length=256)
    """The passphrase awaiting authentication; dropped once a key is agreed."""
    expires_at: float | None = None
    encryption_proposed: Encryption = "none"
    encryption_state: Encryption | None = None
    key: str | None = Field(None, max_length=128)
    """The key agreed by the password-authenticated exchange (hex); its holders are the two clusters' members."""
    initial_allowed_partitions: list[Name] = Field(default_factory=list, max_length=1000)
    mirrors: list[Name] = Field(default_factory=list, max_length=1000)
    """Partitions of this cluster mirrored to the peer."""
    mirrored_in: list[Name] = Field(default_factory=list, max_length=1000)
    """Partitions of this cluster that are mirrors of the peer's (read-only here)."""


class MirrorRequest(BaseModel):
    """POST /api/cluster/peers/{uuid}/mirrors: mirror one partition of this cluster to the peer."""

    model_config = ConfigDict(extra="forbid")

    partition: Name
