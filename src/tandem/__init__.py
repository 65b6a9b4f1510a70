"""Tandem: clustering for load-balancer appliances."""

from tandem._version import __version__
from tandem.sdk import (
    Client,
    Cluster,
    ClusterManager,
    DeviceGroup,
    Failover,
    Job,
    Monitor,
    Partition,
    Pool,
    PoolMember,
    TandemError,
    TrafficGroup,
    TrustedDevice,
    User,
    VirtualServer,
)

__all__ = [
    "Client",
    "Cluster",
    "ClusterManager",
    "DeviceGroup",
    "Failover",
    "Job",
    "Monitor",
    "Partition",
    "Pool",
    "PoolMember",
    "TandemError",
    "TrafficGroup",
    "TrustedDevice",
    "User",
    "VirtualServer",
    "__version__",
]
