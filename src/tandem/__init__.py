"""Tandem: clustering for load-balancer appliances.

The SDK's names (`from tandem import Client, Pool, ...`) load on first use, so that the device's own
processes (failover, data plane) start without importing the SDK.
"""

from typing import Any

from tandem._version import __version__

__all__ = [
    "Certificate",
    "Client",
    "Cluster",
    "ClusterInfo",
    "ClusterManager",
    "ClusterMember",
    "ClusterPeer",
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


def __getattr__(name: str) -> Any:
    if name in __all__:
        from tandem import sdk

        return getattr(sdk, name)
    raise AttributeError(f"module 'tandem' has no attribute {name!r}")
