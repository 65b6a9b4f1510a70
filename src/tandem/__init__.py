"""Tandem: clustering for load-balancer appliances."""

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

from tandem._version import __version__

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
]
