"""The configuration resources: one pydantic model per resource, shared by api, sdk and store.

Each model is the whole resource as stored and returned. Create requests are validated
against it; a PATCH is merged into the stored resource and the result validated against it
again, so there is one definition of what a valid resource is.
"""

from typing import Annotated, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tandem.models.fields import Description, IPAddress, Name, Port, Reference

DEFAULT_PARTITION = "Common"
DEFAULT_TRAFFIC_GROUP = "traffic-group-1"

MonitorType = Literal["tcp", "http"]
LbMethod = Literal["round-robin", "least-connections"]
Protocol = Literal["tcp"]
Role = Literal["admin", "manager", "auditor"]

DEFAULT_LB_METHOD: LbMethod = "round-robin"
MONITOR_INTERVAL, MONITOR_TIMEOUT = 5.0, 16.0
"""Seconds between probes, and without an answer before a member is down."""
HTTP_PATH, HTTP_STATUS = "/", 200
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


def _http_fields(settings: "MonitorSettings | Monitor") -> None:
    """tcp monitors take no path nor expected status; http ones get the defaults."""
    if settings.type == "tcp":
        for field in ("path", "expected_status"):
            if getattr(settings, field) is not None:
                raise ValueError(f"{field}: only http monitors take a {field}")
    else:
        settings.path = settings.path or HTTP_PATH
        settings.expected_status = settings.expected_status or HTTP_STATUS


class MonitorSettings(BaseModel):
    """How a health monitor probes: `tcp` (connect) or `http` (GET `path`, expect `expected_status`).
    A `Monitor` resource is these settings named; an agent's service carries them unnamed."""

    model_config = ConfigDict(extra="forbid")

    type: MonitorType
    interval: MonitorInterval = MONITOR_INTERVAL
    timeout: MonitorInterval = MONITOR_TIMEOUT
    path: MonitorPath = None
    expected_status: ExpectedStatus = None

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
    path: MonitorPath = None
    expected_status: ExpectedStatus = None
    description: Description = ""

    @model_validator(mode="after")
    def _http(self) -> Self:
        _http_fields(self)
        return self


class PoolMember(Resource):
    """A pool member: a backend `address:port`, enabled or disabled."""

    kind: ClassVar[str] = "members"
    identity: ClassVar[tuple[str, ...]] = ("address", "port")
    parent_kind: ClassVar[str | None] = "pools"
    parent_keys: ClassVar[tuple[str, ...]] = ("partition", "pool")
    path_key: ClassVar[str] = "member"

    address: IPAddress
    port: Port
    enabled: bool = True
    description: Description = ""


class Pool(Resource):
    """A pool of members with a load-balancing method and an optional health monitor."""

    kind: ClassVar[str] = "pools"

    partition: Name = DEFAULT_PARTITION
    name: Name
    lb_method: LbMethod = DEFAULT_LB_METHOD
    monitor: Reference | None = None
    members: list[PoolMember] = Field(default_factory=list, max_length=100_000)
    description: Description = ""


class VirtualServer(Resource):
    """A virtual server: a destination `address:port` served by a pool, on a traffic group."""

    kind: ClassVar[str] = "virtuals"

    partition: Name = DEFAULT_PARTITION
    name: Name
    address: IPAddress
    port: Port
    protocol: Protocol = "tcp"
    pool: Reference | None = None
    traffic_group: Name = DEFAULT_TRAFFIC_GROUP
    enabled: bool = True
    description: Description = ""


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


CONFIG_RESOURCES: tuple[type[Resource], ...] = (Partition, Monitor, Pool, VirtualServer)
"""The resources that make up a device's configuration, in dependency order."""
CONFIG_MODELS: dict[str, type[Resource]] = {model.kind: model for model in CONFIG_RESOURCES}
"""The same, by store kind."""
