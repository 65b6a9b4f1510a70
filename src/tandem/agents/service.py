"""What a source wants served, the same for every source: one service, its ports, members and monitor."""

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tandem.models.fields import IPAddress, Name, Port
from tandem.models.resources import DEFAULT_LB_METHOD, DEFAULT_TRAFFIC_GROUP, LbMethod, MonitorSettings, Protocol


class Member(BaseModel):
    """A backend of a port: address and port."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: IPAddress
    port: Port


class ServicePort(BaseModel):
    """One port of a service: a virtual server `address:port` over a pool of `members`."""

    model_config = ConfigDict(extra="forbid")

    port: Port
    protocol: Protocol = "tcp"
    members: list[Member] = Field(default_factory=list, max_length=100_000)


class Service(BaseModel):
    """A service as the agent serves it. `key` names it in the source (`namespace/name`, `file/name`);
    its address is given, or taken from the address pool of its traffic group."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1, max_length=200)
    address: IPAddress | None = None
    traffic_group: Name = DEFAULT_TRAFFIC_GROUP
    ports: list[ServicePort] = Field(min_length=1, max_length=64)
    monitor: MonitorSettings | None = None
    lb_method: LbMethod = DEFAULT_LB_METHOD

    @model_validator(mode="after")
    def _distinct_ports(self) -> Self:
        if len({p.port for p in self.ports}) != len(self.ports):
            raise ValueError("ports: a port is listed twice")
        return self
