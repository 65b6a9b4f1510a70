"""Models of clustering: trusted devices, device groups, and adding a device to trust."""

import ipaddress
import re
from typing import Annotated, Any, Literal, Self, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from tandem.models.fields import Description, HttpsUrl, IPAddress, Name, parse_host_port
from tandem.models.peering import PeerRecord
from tandem.models.resources import DEFAULT_PARTITION, Role

GroupType = Literal["sync-failover", "sync-only"]
SYNC_FAILOVER, SYNC_ONLY = get_args(GroupType)
"""Config sync and failover (traffic groups); config sync only."""
GROUP_TYPES: tuple[str, ...] = get_args(GroupType)
GROUP_LIMITS = {SYNC_FAILOVER: 8, SYNC_ONLY: 32}
"""The most members a device group of each type may have."""
HEARTBEAT_INTERVAL = 0.2
"""A group's heartbeat interval unless told (seconds)."""

SyncStatus = Literal["In Sync", "Changes Pending", "Awaiting Initial Sync", "Not All Devices Synced", "Disconnected"]
IN_SYNC, CHANGES_PENDING, AWAITING_INITIAL_SYNC, NOT_ALL_SYNCED, DISCONNECTED = get_args(SyncStatus)
"""A member's sync status, and a group's (its members' worst)."""
SYNC_STATUSES: tuple[str, ...] = get_args(SyncStatus)


class DeviceGroup(BaseModel):
    """Devices of one trust domain that share the configuration of some partitions."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    type: GroupType
    members: list[Name] = Field(default_factory=list)
    partitions: list[Name] = Field(default_factory=lambda: [DEFAULT_PARTITION])
    auto_sync: bool = True
    full_load_on_sync: bool = False
    heartbeat_interval: float = Field(HEARTBEAT_INTERVAL, ge=0.02, le=10)
    heartbeat_timeout: float | None = Field(None, ge=0.05, le=60)
    """A member silent this long is gone; None (the default): adaptive detection (failover/detector.py)."""
    description: Description = ""

    @model_validator(mode="after")
    def _limits(self) -> Self:
        if len(set(self.members)) != len(self.members):
            raise ValueError("members: a device is listed twice")
        if len(self.members) > GROUP_LIMITS[self.type]:
            raise ValueError(f"members: a {self.type} group has at most {GROUP_LIMITS[self.type]} devices")
        if len(set(self.partitions)) != len(self.partitions):
            raise ValueError("partitions: a partition is listed twice")
        if self.heartbeat_timeout is not None and self.heartbeat_timeout <= self.heartbeat_interval:
            raise ValueError("heartbeat_timeout: must be longer than heartbeat_interval")
        return self


TrackerType = Literal["gateway", "script", "interface", "pool"]
INTERFACE_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,15}$")
"""A Linux interface name (IFNAMSIZ less the NUL; no slash, no space, no colon: an alias is no link)."""
POOL_PATH = re.compile(r"^/([A-Za-z0-9][A-Za-z0-9_.-]{0,62})/([A-Za-z0-9][A-Za-z0-9_.-]{0,62})$")
"""A pool's full path: /partition/name."""
POOL_THRESHOLD = 50
"""A pool tracker's threshold unless told (percent of its members up)."""
FULL_SCORE = 100
"""A traffic group's score on a device whose trackers are all up."""


class Tracker(BaseModel):
    """Something each device checks of its own surroundings for a traffic group: a device whose trackers are down
    scores less (`FULL_SCORE` less their weights), and the group lives on the highest-scoring device."""

    model_config = ConfigDict(extra="forbid")

    type: TrackerType
    """`gateway`: ICMP echo to `target` (an IPv4 address) answered within `timeout`; `script`: the executable
    `target` (an absolute path, run without a shell) exits 0 within `timeout`; `interface`: the interface `target`
    is up with carrier (judged at each netlink event, at once: `interval`, `timeout`, `fall` and `rise` do not
    apply); `pool`: at least `threshold` percent of the enabled members of the pool `target` (`/partition/name`)
    are up, as this device probes them with the pool's monitor (every device, active or standby)."""
    target: str = Field(min_length=1, max_length=255)
    weight: int = Field(50, ge=1, le=FULL_SCORE)
    interval: float = Field(0.5, ge=0.1, le=60)
    timeout: float = Field(0.5, ge=0.05, le=60)
    fall: int = Field(2, ge=1, le=10)
    """Checks failed in a row before the tracker is down."""
    rise: int = Field(2, ge=1, le=10)
    """Checks passed in a row before it is up again."""
    threshold: int | None = Field(None, ge=1, le=100, exclude_if=lambda value: value is None)
    """`pool` only: the percentage of its enabled members that must be up (default 50). Left out of other
    trackers' records, which a device of the release before reads."""

    @model_validator(mode="after")
    def _target(self) -> Self:
        if self.type == "gateway":
            try:
                if ipaddress.ip_address(self.target).version != 4:
                    raise ValueError
            except ValueError:
                raise ValueError(f"target: a gateway tracker checks an IPv4 address, not {self.target!r}") from None
        elif self.type == "script" and (not self.target.startswith("/") or not self.target.isprintable()):
            raise ValueError("target: a script tracker runs an absolute path (without control characters)")
        elif self.type == "interface" and (not INTERFACE_NAME.match(self.target) or self.target in (".", "..")):
            raise ValueError(f"target: {self.target!r} is not an interface name (1-15 letters, digits, _.@-)")
        elif self.type == "pool" and not POOL_PATH.match(self.target):
            raise ValueError(f"target: a pool tracker names a pool as /partition/name, not {self.target!r}")
        if self.type != "pool" and self.threshold is not None:
            raise ValueError("threshold: only a pool tracker has one")
        if self.type == "pool" and self.threshold is None:
            self.threshold = POOL_THRESHOLD
        return self

    def describe(self) -> str:
        return f"{self.type} {self.target}"


class TrafficGroup(BaseModel):
    """Floating addresses and the virtual servers on them, active on exactly one device of a sync-failover group."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    device_group: Name
    ha_order: list[Name] = Field(default_factory=list, max_length=8)
    addresses: list[IPAddress] = Field(default_factory=list, max_length=256)
    auto_failback: bool = False
    failback_delay: float = Field(0.0, ge=0, le=3600)
    """With `auto_failback`: seconds the preferred device must have been in service before it takes the group back
    (keepalived's preempt_delay)."""
    quorum: bool = False
    """A device that does not hear a majority of the group's members (itself included) gives the traffic group
    up: with three or more devices, the side of a partition left in the minority serves nothing."""
    trackers: list[Tracker] = Field(default_factory=list, max_length=16)
    score_hold: float = Field(0.5, ge=0, le=600)
    """Seconds a standby must outscore the active device before it takes the group over (no flapping)."""
    mirroring: bool = False
    """Mirror the kernel's state of its connections to the other device of a group of two (conntrackd), so that
    connections the kernel translates (the nftables engine) keep going after a takeover."""
    description: Description = ""

    @model_validator(mode="after")
    def _unique(self) -> Self:
        if len(set(self.ha_order)) != len(self.ha_order):
            raise ValueError("ha_order: a device is listed twice")
        return self


class TrustRequest(BaseModel):
    """Add the device at `url` to this device's trust domain, with that device's admin credentials."""

    model_config = ConfigDict(extra="forbid")

    url: HttpsUrl
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)
    fingerprint: str | None = Field(None, max_length=200)


def _checked_host_port(value: str) -> str:
    parse_host_port(value)  # ValueError if it is not ADDR:PORT
    return value


class TrustedDevice(BaseModel):
    """A device of the trust domain as its record holds it (its certificate is the one pinned)."""

    id: str = Field(min_length=1, max_length=64)
    name: Name
    fingerprint: str = Field(pattern=r"^([0-9a-f]{2}:){31}[0-9a-f]{2}$")
    cert: str = Field(max_length=20_000)
    management_url: str = Field(max_length=300)
    peer_url: str = Field(max_length=300)
    """The peer channel (TCP, TLS) and the heartbeats (UDP) use this address and port."""
    intercluster_url: str = Field("", max_length=300)
    """Where this device listens for peer clusters (host:port), empty if it does not."""
    heartbeat_urls: list[Annotated[str, Field(max_length=70), AfterValidator(_checked_host_port)]] = Field(
        default_factory=list, max_length=7)
    """Its dedicated heartbeat addresses (host:port, UDP): heartbeats go on each as well as on `peer_url`."""
    management_fingerprint: str = Field("", pattern=r"^(([0-9a-f]{2}:){31}[0-9a-f]{2})?$")
    """The certificate its API presents when it is not the identity's (one installed from a CA), else empty."""

    @property
    def api_fingerprint(self) -> str:
        """The fingerprint of the certificate its management API presents."""
        return self.management_fingerprint or self.fingerprint

    def dialed_alike(self, other: "TrustedDevice") -> bool:
        """Whether a peer link to `other` is a link to this: same device, certificate and peer address."""
        return (self.id, self.fingerprint, self.cert, self.peer_url) == (other.id, other.fingerprint, other.cert,
                                                                         other.peer_url)


class GroupRecord(DeviceGroup):
    """A device group as the trust domain keeps it."""

    seed: str = Field(max_length=64)
    """The id of the member whose configuration seeds the group (not shown by the API)."""

    def public(self) -> DeviceGroup:
        """The group as the API shows it."""
        return DeviceGroup.model_construct(**self.model_dump(exclude={"seed"}))


class MemberState(BaseModel):
    """A member's cluster-wide state, kept in the domain so that every member sees the same."""

    id: str = Field(min_length=1, max_length=64)
    evacuated: bool = False


class ClusterSettings(BaseModel):
    """Settings of the whole cluster (the trust domain)."""

    model_config = ConfigDict(extra="forbid")

    name: Name


class UserRecord(BaseModel):
    """A user of the trust domain as its record holds it: created once, valid on every member."""

    name: Name
    role: Role
    partitions: list[Name] = Field(default_factory=list, max_length=256)
    description: Description = ""
    password_hash: str = Field(min_length=1, max_length=512)

    def public(self) -> dict[str, Any]:
        """The user as the API shows it (never its password's hash)."""
        return self.model_dump(exclude={"password_hash"})


class DomainRecord(BaseModel):
    """One record of the trust domain's state, as devices exchange them."""

    kind: Literal["device", "group", "traffic-group", "member", "cluster", "peer", "user"]
    key: str = Field(min_length=1, max_length=64)
    body: dict
    hlc: int = Field(ge=0)
    origin: str = Field(min_length=1, max_length=64)
    deleted: bool

    @model_validator(mode="after")
    def _body(self) -> Self:
        RECORD_MODELS[self.kind].model_validate(self.body)
        return self


RECORD_MODELS: dict[str, type[BaseModel]] = {
    "device": TrustedDevice, "group": GroupRecord, "traffic-group": TrafficGroup, "member": MemberState,
    "cluster": ClusterSettings, "peer": PeerRecord, "user": UserRecord}


class DomainState(BaseModel):
    """The trust domain's id and records."""

    domain_id: str = Field(min_length=1, max_length=64)
    records: list[DomainRecord] = Field(max_length=10_000)


class JoinRequest(DomainState):
    """What a member sends to a device it adds: the domain's id, secret and records."""

    model_config = ConfigDict(extra="forbid")

    secret: str = Field(min_length=32, max_length=128)


MemberStatus = Literal["Online", "Offline", "Evacuated"]
"""A cluster member's status, as the device asked sees it now."""


class MemberConfigField(BaseModel):
    """One thing a new member must supply: the field `key` of the body of `entity`, posted to `name`."""

    entity: str
    name: str
    key: str
    description: str


class ClusterView(BaseModel):
    """The cluster as one device sees it: the body of `GET /api/cluster`."""

    server_name: str
    """The device asked."""
    enabled: bool
    """It is in a trust domain with other devices."""
    member_config: list[MemberConfigField]
    cluster_name: str
    uuid: str
    """The trust domain's id."""


class ClusterMemberView(BaseModel):
    """A member of the cluster as one device sees it now: the body of `GET /api/cluster/members/{name}`."""

    server_name: str
    url: str
    database: bool
    status: MemberStatus
    message: str
    roles: list[str]


class TrustedDeviceView(BaseModel):
    """A trusted device as the API shows it, with this device's link to it: the body of
    `GET /api/trust/devices/{name}`."""

    name: str
    id: str
    fingerprint: str
    management_url: str
    management_fingerprint: str
    """The certificate its API presents, when it is not its identity's (`fingerprint`); else empty."""
    peer_url: str
    self: bool
    """It is the device asked."""
    connected: bool | None
    """Whether the link of the device asked to it is up (None for the device asked itself)."""
    message: str
    version: str | None = None
    """Its release, as its peer channel last answered (None: not heard yet, or a release that does not say)."""


class MemberSyncStatus(BaseModel):
    """A group member's sync status as one device sees it."""

    name: str
    status: SyncStatus
    connected: bool
    pending_changes: int
    last_commit: dict[str, int]
    """The last commit the member has from each origin (by device name)."""
    last_exchange: float | None
    """The age in seconds of the last status the member sent (None: never heard)."""
    message: str


class ConflictSide(BaseModel):
    """The winning or losing side of a write conflict."""

    device: str
    value: dict[str, Any] | None
    """The object as presented, None for a delete or a member's removal."""


class ConflictView(BaseModel):
    """A write conflict: the record of a lost concurrent write, as a group's status shows it."""

    type: Literal["write"] = "write"
    kind: str
    partition: str
    name: str
    devices: list[str]
    winner: ConflictSide
    loser: ConflictSide
    message: str
    detected_at: str
    """ISO 8601, UTC."""
    member: str | None = Field(None, exclude_if=lambda member: member is None)
    """The pool member the conflict is about (absent when it is about a whole object)."""


class ViolationView(BaseModel):
    """A rule of the API the merged configuration breaks, and how every device resolves it."""

    type: Literal["integrity"] = "integrity"
    kind: str
    partition: str
    name: str
    devices: list[str]
    rule: str
    objects: list[str]
    message: str
    resolution: str


class GroupStatus(BaseModel):
    """A device group's sync status as one device sees it: the body of `GET /api/device-groups/{name}/status`."""

    name: str
    type: GroupType
    status: SyncStatus
    """The members' worst."""
    members: list[MemberSyncStatus]
    conflicts: list[Annotated[ConflictView | ViolationView, Field(discriminator="type")]]
    """The lost concurrent writes, oldest first, then the rules the merged configuration breaks."""
