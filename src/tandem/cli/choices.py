"""Command-line choices made from the models' `Literal`s, so an option accepts exactly what the API does."""

import enum
from typing import Any, get_args

from tandem.models.cluster import GroupType
from tandem.models.resources import LbMethod, MemberState, MonitorType, Persistence, Protocol, Role


def choices(name: str, literal: Any) -> type[enum.StrEnum]:
    """An enum of the values of `literal` (`sync-failover` is member `sync_failover`), as typer wants them."""
    return enum.StrEnum(name, [(value.replace("-", "_"), value) for value in get_args(literal)])


MonitorTypeChoice = choices("MonitorTypeChoice", MonitorType)
LbMethodChoice = choices("LbMethodChoice", LbMethod)
PersistenceChoice = choices("PersistenceChoice", Persistence)
ProtocolChoice = choices("ProtocolChoice", Protocol)
RoleChoice = choices("RoleChoice", Role)
MemberStateChoice = choices("MemberStateChoice", MemberState)
GroupTypeChoice = choices("GroupTypeChoice", GroupType)
