"""Tandem: clustering for load-balancer appliances."""

from tandem._version import __version__
from tandem.sdk import (
    Client,
    Job,
    Monitor,
    Partition,
    Pool,
    PoolMember,
    TandemError,
    User,
    VirtualServer,
)

__all__ = [
    "Client",
    "Job",
    "Monitor",
    "Partition",
    "Pool",
    "PoolMember",
    "TandemError",
    "User",
    "VirtualServer",
    "__version__",
]
