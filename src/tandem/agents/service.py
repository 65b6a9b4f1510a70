"""What a source wants served, the same for every source: one service at one address, its ports, pools,
HTTP routes and certificates, and the problems worth telling its owners about."""

from dataclasses import dataclass
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tandem.models.fields import IPAddress, Name, Port
from tandem.models.http_fields import Location
from tandem.models.resources import (
    DEFAULT_LB_METHOD,
    DEFAULT_TRAFFIC_GROUP,
    LbMethod,
    MonitorSettings,
    Protocol,
    RuleMatch,
)

SHORT_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,11}$"
"""A backend's or certificate's name within its service (short: the object's name adds the service's)."""


class Member(BaseModel):
    """A backend's address and port, and its share of the traffic (`weight`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: IPAddress
    port: Port
    weight: int = Field(1, ge=0, le=256)


class Backend(BaseModel):
    """A pool of an http/https port's routes, named within its service."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=SHORT_NAME)
    members: list[Member] = Field(default_factory=list, max_length=100_000)


class Route(BaseModel):
    """An http/https port's rule: requests that `match` go to `backend`, or are redirected to `location`."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    match: RuleMatch = Field(default_factory=RuleMatch)
    backend: str | None = None
    location: Location | None = None
    status: int | None = None

    @model_validator(mode="after")
    def _one_action(self) -> Self:
        if (self.backend is None) == (self.location is None):
            raise ValueError("a route goes to a backend or redirects to a location")
        return self


class TlsPair(BaseModel):
    """A certificate chain and its key, named within its service."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=SHORT_NAME)
    certificate: str
    key: str


class ServicePort(BaseModel):
    """One port of a service: a virtual server `address:port`. A tcp port serves its `members`; an http or
    https one its `routes` in order, then its default `backend` (none: 404), an https one with `certificates`."""

    model_config = ConfigDict(extra="forbid")

    port: Port
    protocol: Protocol = "tcp"
    members: list[Member] = Field(default_factory=list, max_length=100_000)
    routes: list[Route] = Field(default_factory=list, max_length=200)
    backend: str | None = None
    certificates: list[str] = Field(default_factory=list, max_length=16)


class Service(BaseModel):
    """A service as the agent serves it. `key` names it in the source (`namespace/name`, `file/name`,
    `ingress:namespace/name`); its address is given, or taken from the address pool of its traffic group
    (services with the same `sharing_key` take the same one). `warnings` are problems that do not stop it
    from being served, as (the source's object, what is wrong)."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1, max_length=200)
    address: IPAddress | None = None
    sharing_key: str | None = Field(None, min_length=1, max_length=128)
    ip_family: Literal[4, 6] | None = None
    """The family of the address taken from the pool (None: either)."""
    traffic_group: Name = DEFAULT_TRAFFIC_GROUP
    ports: list[ServicePort] = Field(min_length=1, max_length=64)
    backends: list[Backend] = Field(default_factory=list, max_length=1000)
    certificates: list[TlsPair] = Field(default_factory=list, max_length=64)
    monitor: MonitorSettings | None = None
    lb_method: LbMethod = DEFAULT_LB_METHOD
    warnings: tuple[tuple[str, str], ...] = ()
    revision: str = ""
    """Changes when what the source has to say about the service (beyond its address, problem and warnings:
    a Gateway's conditions) changes."""

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if len({p.port for p in self.ports}) != len(self.ports):
            raise ValueError("ports: a port is listed twice")
        backends, certificates = {b.name for b in self.backends}, {c.name for c in self.certificates}
        for port in self.ports:
            used = {route.backend for route in port.routes if route.backend} | ({port.backend} - {None})
            if used - backends:
                raise ValueError(f"port {port.port}: backend {sorted(used - backends)[0]} is not defined")
            if set(port.certificates) - certificates:
                raise ValueError(f"port {port.port}: certificate {sorted(set(port.certificates) - certificates)[0]} "
                                 "is not defined")
        return self

    @property
    def owner_key(self) -> str:
        """What decides which agent writes the service: services sharing an address go to the same agent."""
        return f"share/{self.sharing_key}" if self.sharing_key else self.key


@dataclass(frozen=True)
class Report:
    """What the agent tells a source about a service: its address, or why it has none (`problem`), and the
    service's `warnings`; told again when any of them or the service's `revision` changes."""

    address: str | None
    problem: str | None = None
    warnings: tuple[tuple[str, str], ...] = ()
    revision: str = ""
