"""The configuration resources: one pydantic model per resource, shared by api, sdk and store.

Each model is the whole resource as stored and returned. Create requests are validated
against it; a PATCH is merged into the stored resource and the result validated against it
again, so there is one definition of what a valid resource is.
"""

from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, computed_field, model_validator

from tandem.models import pem
from tandem.models.fields import Description, IPAddress, Name, Port, Reference
from tandem.models.http_fields import (
    PATH_MAX,
    REDIRECT_STATUSES,
    HeaderName,
    HeaderValue,
    Host,
    HttpMethod,
    Location,
    PathType,
    RuleAction,
    check_path,
)

DEFAULT_PARTITION = "Common"
DEFAULT_TRAFFIC_GROUP = "traffic-group-1"

MonitorType = Literal["tcp", "http"]
MemberState = Literal["enabled", "disabled", "drain"]
LbMethod = Literal["round-robin", "least-connections", "source-hash", "random"]
Protocol = Literal["tcp", "udp", "http", "https"]
Snat = Literal["none", "automap"]
LAYER4 = ("tcp", "udp")
"""The protocols served without looking into the traffic: no rules, no certificates."""
Persistence = Literal["none", "source", "cookie"]
Role = Literal["admin", "manager", "auditor"]
CertificateStatus = Literal["valid", "expiring", "expired"]

DEFAULT_LB_METHOD: LbMethod = "round-robin"
MONITOR_INTERVAL, MONITOR_TIMEOUT = 5.0, 16.0
"""Seconds between probes, and without an answer before a member is down."""
HTTP_PATH, HTTP_STATUS, HTTP_METHOD = "/", 200, "GET"
"""What an http monitor asks for and expects unless told."""


class Resource(BaseModel):
    """Base of every resource: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    kind: ClassVar[str]
    """The store kind and the collection name under /api."""
    identity: ClassVar[tuple[str, ...]] = ("partition", "name")
    """The fields that name the object; they cannot be changed by PATCH."""
    parent_kind: ClassVar[str | None] = None
    """A child resource's parent collection (`pools` for members), None for a top-level one."""
    parent_keys: ClassVar[tuple[str, ...]] = ()
    """A child's path segments naming its parent (`partition`, `pool`)."""
    path_key: ClassVar[str] = "name"
    """A child's path segment naming it within its parent (`member`: `address:port`)."""
    former: ClassVar[dict[str, type]] = {}
    """Former fields (name: type): a write may still give them, reads show them (computed), filters take them."""


class Partition(Resource):
    """A namespace of configuration objects: the unit of sync, RBAC and agent ownership."""

    kind: ClassVar[str] = "partitions"
    identity: ClassVar[tuple[str, ...]] = ("name",)

    name: Name
    description: Description = ""


MonitorInterval = Annotated[float, Field(ge=0.05, le=3600)]
"""Seconds: between probes, or without an answer before a member is down."""
MonitorPath = Annotated[str | None, Field(max_length=1024, pattern=r"^/[\x21-\x7e]*$")]
ExpectedStatus = Annotated[int | None, Field(ge=100, le=599)]
MonitorCount = Annotated[int, Field(ge=1, le=10, strict=True)]
"""Consecutive probes that must agree before a member changes state (rise: up, fall: down)."""
MonitorMethod = Annotated[str | None, Field(pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}$")]
"""An HTTP method: an HTTP token."""


def _exact_host(value: str) -> str:
    if value.startswith("*"):
        raise ValueError("must be a DNS name (example.com), not a wildcard")
    return value


MonitorHost = Annotated[Host | None, AfterValidator(lambda v: v if v is None else _exact_host(v))]
"""A DNS name, not a wildcard: the Host header an http monitor sends (default: the member's `address:port`),
the name a pool asks its members for over TLS."""
_HTTP_ONLY = ("path", "expected_status", "method", "host")


def _http_fields(settings: "MonitorSettings | Monitor") -> None:
    """tcp monitors take no path, expected status, method nor host; http ones get the defaults."""
    if settings.type == "tcp":
        for field in _HTTP_ONLY:
            if getattr(settings, field) is not None:
                raise ValueError(f"{field}: only http monitors take a {field}")
    else:
        settings.path = settings.path or HTTP_PATH
        settings.expected_status = settings.expected_status or HTTP_STATUS
        settings.method = settings.method or HTTP_METHOD


class MonitorSettings(BaseModel):
    """How a health monitor probes: `tcp` (connect) or `http` (`method` `path` with `host`, expect
    `expected_status`), over TLS when `tls` (not verified); a member goes up after `rise` successes in a
    row, down after `fall` failures in a row. A `Monitor` resource is these settings named; an agent's
    service carries them unnamed."""

    model_config = ConfigDict(extra="forbid")

    type: MonitorType
    interval: MonitorInterval = MONITOR_INTERVAL
    timeout: MonitorInterval = MONITOR_TIMEOUT
    rise: MonitorCount = 1
    fall: MonitorCount = 1
    path: MonitorPath = None
    expected_status: ExpectedStatus = None
    method: MonitorMethod = None
    host: MonitorHost = None
    tls: bool = False

    @model_validator(mode="after")
    def _http(self) -> Self:
        _http_fields(self)
        return self


class Monitor(Resource):
    """A health monitor resource: `MonitorSettings` named in a partition."""

    kind: ClassVar[str] = "monitors"

    partition: Name = DEFAULT_PARTITION
    name: Name
    type: MonitorType
    interval: MonitorInterval = MONITOR_INTERVAL
    timeout: MonitorInterval = MONITOR_TIMEOUT
    rise: MonitorCount = 1
    fall: MonitorCount = 1
    path: MonitorPath = None
    expected_status: ExpectedStatus = None
    method: MonitorMethod = None
    host: MonitorHost = None
    tls: bool = False
    description: Description = ""

    @model_validator(mode="after")
    def _http(self) -> Self:
        _http_fields(self)
        return self


class Certificate(Resource):
    """A TLS certificate in a partition: a PEM chain (leaf first, then each issuer) and the leaf's private
    key. `key` is write-only: stored and replicated, never returned; a write without it keeps the stored
    one. Created without a key it is a CA bundle (the certificates a pool's `tls.ca` trusts), which an https
    virtual server cannot use. Reads add what the leaf shows (computed, read-only, never stored: `models.pem`)."""

    kind: ClassVar[str] = "certificates"

    partition: Name = DEFAULT_PARTITION
    name: Name
    certificate: str = Field(max_length=pem.MAX_CHAIN)
    key: str | None = Field(None, max_length=pem.MAX_KEY, json_schema_extra={"writeOnly": True})
    description: Description = ""

    @model_validator(mode="after")
    def _pem(self) -> Self:
        chain = pem.load_chain(self.certificate)
        if self.key is not None:
            pem.check_key(self.key, chain[0])
        return self

    def _shown(self) -> pem.Shown:
        return pem.chain_info(self.certificate).shown(datetime.now(UTC))

    @computed_field  # type: ignore[prop-decorator]
    @property
    def subjects(self) -> list[str]:
        """The leaf's common name, then its DNS names."""
        return self._shown().subjects

    @computed_field  # type: ignore[prop-decorator]
    @property
    def not_after(self) -> str:
        """When the leaf expires (ISO 8601 UTC)."""
        return self._shown().not_after

    @computed_field  # type: ignore[prop-decorator]
    @property
    def fingerprint(self) -> str:
        """SHA-256 of the leaf (`ab:cd:...`)."""
        return self._shown().fingerprint

    @computed_field  # type: ignore[prop-decorator]
    @property
    def status(self) -> CertificateStatus:
        """`valid`, `expiring` (within 30 days) or `expired`."""
        return self._shown().status


def member_state(body: dict[str, Any]) -> MemberState:
    """A member's state from its fields: `state`, else the former `enabled` (false: disabled)."""
    state = body.get("state")
    if state is not None:
        return state  # type: ignore[no-any-return]
    return "disabled" if body.get("enabled") is False else "enabled"


class PoolMember(Resource):
    """A pool member: a backend `address:port` in a `state`: `enabled`, `disabled` (no traffic) or `drain`
    (no new connections; open ones finish). `enabled` is its former switch: read-only, true unless
    disabled; a write may still give it (false: disabled) when it gives no `state`."""

    kind: ClassVar[str] = "members"
    identity: ClassVar[tuple[str, ...]] = ("address", "port")
    parent_kind: ClassVar[str | None] = "pools"
    parent_keys: ClassVar[tuple[str, ...]] = ("partition", "pool")
    path_key: ClassVar[str] = "member"
    former: ClassVar[dict[str, type]] = {"enabled": bool}

    address: IPAddress
    port: Port
    state: MemberState = "enabled"
    weight: int = Field(1, ge=0, le=256)
    """Its share of new connections relative to the other members' (0: none)."""
    description: Description = ""

    @model_validator(mode="before")
    @classmethod
    def _former_enabled(cls, data: Any) -> Any:
        if isinstance(data, dict) and "enabled" in data:
            enabled = data["enabled"]
            if not isinstance(enabled, bool):
                raise ValueError("enabled: must be true or false")
            data = {k: v for k, v in data.items() if k != "enabled"} | {"state": member_state(data)}
        return data

    @computed_field  # type: ignore[prop-decorator]
    @property
    def enabled(self) -> bool:
        """Read-only: false when disabled."""
        return self.state != "disabled"

    @staticmethod
    def current(stored: dict[str, Any]) -> dict[str, Any]:
        """A stored member as this version shows it: one stored before `state` gets its state."""
        if "state" in stored:
            return stored
        state = member_state(stored)
        return {k: v for k, v in stored.items() if k != "enabled"} | {"state": state, "enabled": state != "disabled"}

    @staticmethod
    def patched(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
        """A stored member's fields with `patch` applied: its `enabled` is derived (dropped), and a patch
        giving `enabled` without `state` replaces the state."""
        kept = {k: v for k, v in current.items() if k != "enabled" and not (k == "state" and "enabled" in patch)}
        return kept | patch


class PoolTls(BaseModel):
    """How a pool reaches its members over TLS: `verify` their certificate chain against the CA bundle
    `ca` (a certificate without key; required when verifying), or not at all; `server_name` is sent as
    SNI and, when verifying, must be a name of the member's certificate."""

    model_config = ConfigDict(extra="forbid")

    verify: bool = True
    ca: Reference | None = None
    server_name: MonitorHost = None

    @model_validator(mode="after")
    def _ca(self) -> Self:
        if self.verify and self.ca is None:
            raise ValueError("ca: verifying members needs a CA bundle (a certificate without key)")
        if not self.verify and self.ca is not None:
            raise ValueError("ca: only a pool that verifies its members takes a ca")
        return self


class Pool(Resource):
    """A pool of members with a load-balancing method, a persistence and an optional health monitor."""

    kind: ClassVar[str] = "pools"

    partition: Name = DEFAULT_PARTITION
    name: Name
    lb_method: LbMethod = DEFAULT_LB_METHOD
    persistence: Persistence = "none"
    """`source`: a client address sticks to a member; `cookie`: a client holding the cookie does (http)."""
    monitor: Reference | None = None
    tls: PoolTls | None = None
    """Members are reached over TLS (None: in the clear)."""
    members: list[PoolMember] = Field(default_factory=list, max_length=100_000)
    description: Description = ""


class HeaderMatch(BaseModel):
    """A request header a rule matches: `name` present with exactly `value`."""

    model_config = ConfigDict(extra="forbid")

    name: HeaderName
    value: HeaderValue


class RuleMatch(BaseModel):
    """What a request must be for a rule to apply: every condition given holds; none given matches all."""

    model_config = ConfigDict(extra="forbid")

    host: Host | None = None
    path: Annotated[str | None, Field(max_length=PATH_MAX, strict=True)] = None
    path_type: PathType = "prefix"
    methods: list[HttpMethod] = Field(default_factory=list, max_length=7)
    headers: list[HeaderMatch] = Field(default_factory=list, max_length=8)

    @model_validator(mode="after")
    def _path(self) -> Self:
        if self.path is not None:
            try:
                check_path(self.path, self.path_type)
            except ValueError as error:
                raise ValueError(f"path: {error}") from None
        return self


_TAKES = {"pool": "forward", "location": "redirect", "status": "redirect or respond"}
"""Which actions take each of a rule's optional fields."""


class Rule(BaseModel):
    """An HTTP rule: when `match` holds, forward to `pool`, redirect to `location`, respond with `status`,
    or reject."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    match: RuleMatch = Field(default_factory=RuleMatch)
    action: RuleAction
    pool: Reference | None = None
    location: Location | None = None
    status: int | None = None

    @model_validator(mode="after")
    def _action(self) -> Self:
        needs = {"forward": "pool", "redirect": "location", "respond": "status"}.get(self.action)
        for field in ("pool", "location", "status"):
            if field == needs and getattr(self, field) is None:
                raise ValueError(f"{field}: a {self.action} rule needs a {field}")
            if field != needs and getattr(self, field) is not None and (self.action, field) != ("redirect", "status"):
                raise ValueError(f"{field}: only a {_TAKES[field]} rule takes a {field}")
        if self.action == "redirect":
            self.status = 302 if self.status is None else self.status
            if self.status not in REDIRECT_STATUSES:
                raise ValueError(f"status: a redirect's status is one of {', '.join(map(str, REDIRECT_STATUSES))}")
        if self.action == "respond" and not 200 <= self.status <= 599:  # type: ignore[operator]
            raise ValueError("status: a respond rule's status is 200-599")
        return self


class VirtualServer(Resource):
    """A virtual server: a destination `address:port` served by a pool, on a traffic group. An http or https
    one applies its rules in order (the first that matches wins; none: `pool`); an https one terminates TLS
    with its certificates (chosen by SNI, the first by default)."""

    kind: ClassVar[str] = "virtuals"

    partition: Name = DEFAULT_PARTITION
    name: Name
    address: IPAddress
    port: Port
    protocol: Protocol = "tcp"
    pool: Reference | None = None
    rules: list[Rule] = Field(default_factory=list, max_length=200)
    certificates: list[Reference] = Field(default_factory=list, max_length=16)
    forwarded_for: bool = True
    """http/https: add `X-Forwarded-For` and `Forwarded` to requests."""
    proxy_protocol: bool = False
    """tcp: send the client's address to members with the PROXY protocol v2."""
    snat: Snat = "none"
    """tcp/udp on the nftables engine (a proxying engine always connects from the device): `automap` gives
    connections to members the source address of the traffic group (its first floating address of the
    virtual server's family, else the virtual server's address), so members answer through the active
    device; `none` keeps the client's, and members route back through the active device themselves."""
    traffic_group: Name = DEFAULT_TRAFFIC_GROUP
    enabled: bool = True
    description: Description = ""

    @model_validator(mode="after")
    def _protocol(self) -> Self:
        if self.protocol in LAYER4:
            for field in ("rules", "certificates"):
                if getattr(self, field):
                    raise ValueError(f"{field}: a {self.protocol} virtual server takes no {field}")
        elif self.snat != "none":
            raise ValueError(f"snat: an {self.protocol} virtual server's connections to members always come from "
                             "the device (it proxies them): snat is for tcp and udp")
        if self.proxy_protocol and self.protocol != "tcp":
            raise ValueError("proxy_protocol: only a tcp virtual server sends the PROXY protocol")
        if self.protocol == "https" and not self.certificates:
            raise ValueError("certificates: an https virtual server needs at least one certificate")
        if self.protocol == "http" and self.certificates:
            raise ValueError("certificates: only an https virtual server takes certificates")
        _unique("certificates", self.certificates)
        _unique("rules", [rule.name for rule in self.rules], ".name")
        return self


def _unique(field: str, values: list[str], suffix: str = "") -> None:
    seen = set()
    for index, value in enumerate(values):
        if value in seen:
            raise ValueError(f"{field}.{index}{suffix}: {value!r} is given twice")
        seen.add(value)


class User(Resource):
    """An API user. `password` is write-only: it is hashed (argon2) and never returned."""

    kind: ClassVar[str] = "users"
    identity: ClassVar[tuple[str, ...]] = ("name",)

    name: Name
    role: Role
    partitions: list[Name] = Field(default_factory=list, max_length=256)
    password: str | None = Field(None, min_length=8, max_length=256)
    description: Description = ""

    @model_validator(mode="after")
    def _manager_partitions(self) -> Self:
        if self.role == "manager" and not self.partitions:
            raise ValueError("partitions: a manager needs at least one partition")
        if self.role != "manager" and self.partitions:
            raise ValueError("partitions: only a manager is limited to partitions")
        return self


CONFIG_RESOURCES: tuple[type[Resource], ...] = (Partition, Monitor, Certificate, Pool, VirtualServer)
"""The resources that make up a device's configuration, in dependency order."""
CONFIG_MODELS: dict[str, type[Resource]] = {model.kind: model for model in CONFIG_RESOURCES}
"""The same, by store kind."""
