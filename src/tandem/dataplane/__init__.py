"""The data plane: the builtin proxy engine (TCP proxies, balancing, health monitors, counters).

The failover/config side builds what to serve with `served_from_objects` (a `Catalog`) / `served_from_config`
and hands it to `BuiltinEngine.apply()`.
"""

from tandem.dataplane.balancer import LB_METHODS, Balancer, Target
from tandem.dataplane.catalog import served_from_objects
from tandem.dataplane.engine import (
    BuiltinEngine,
    ServedMember,
    ServedPool,
    ServedVirtual,
    monitor_from_config,
    served_from_config,
)
from tandem.dataplane.monitor import DOWN, UNCHECKED, UP, MonitorConfig, PoolMonitor, probe
from tandem.dataplane.proxy import VirtualServerProxy
from tandem.dataplane.stats import Counters, PoolStats, Stats

__all__ = [
    "DOWN",
    "LB_METHODS",
    "UNCHECKED",
    "UP",
    "Balancer",
    "BuiltinEngine",
    "Counters",
    "MonitorConfig",
    "PoolMonitor",
    "PoolStats",
    "ServedMember",
    "ServedPool",
    "ServedVirtual",
    "Stats",
    "Target",
    "VirtualServerProxy",
    "monitor_from_config",
    "probe",
    "served_from_config",
    "served_from_objects",
]
