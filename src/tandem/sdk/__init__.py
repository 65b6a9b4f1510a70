"""The Tandem Python SDK: `Client` (the connection) and one resource class per API object.

    from tandem import Client, Pool
    with Client("https://10.0.0.1:8443", "admin", "secret", fingerprint="sha256:..."):
        Pool(name="web", members=[{"address": "10.0.1.1", "port": 80}]).post()
"""

from tandem.sdk import connection
from tandem.sdk.client import Client
from tandem.sdk.cluster import Cluster, ClusterManager
from tandem.sdk.cluster_members import ClusterInfo, ClusterMember
from tandem.sdk.clustering import DeviceGroup, TrustedDevice
from tandem.sdk.connection import set_default
from tandem.sdk.errors import TandemError
from tandem.sdk.failover import Failover, TrafficGroup
from tandem.sdk.job import Job
from tandem.sdk.peering import ClusterPeer
from tandem.sdk.resource import Resource
from tandem.sdk.resources import Certificate, Monitor, Partition, Pool, PoolMember, User, VirtualServer

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
    "Resource",
    "TandemError",
    "TrafficGroup",
    "TrustedDevice",
    "User",
    "VirtualServer",
    "connection",
    "set_default",
]
