"""What the failover process needs to know, handed to it by the management process as one snapshot
whenever it changes (it never reads the store or the trust domain itself)."""

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Peer:
    """A member of this device's sync-failover group (this device included)."""

    id: str
    name: str
    host: str
    port: int
    """Where its heartbeats go (its peer channel's address, UDP)."""


@dataclass(frozen=True)
class TrafficGroupConfig:
    name: str
    ha_order: tuple[str, ...]
    auto_failback: bool
    addresses: tuple[str, ...]
    """Its floating addresses and those of its virtual servers: held while this device is active for it."""


@dataclass(frozen=True)
class FailoverConfig:
    device_id: str
    device_name: str
    key: str
    """The heartbeat key (hex), derived from the trust domain's secret."""
    group: str | None = None
    """This device's sync-failover group (None: it serves on its own)."""
    interval: float = 0.2
    timeout: float = 1.0
    peers: tuple[Peer, ...] = ()
    trusted: frozenset[str] = frozenset()
    """Ids of the devices of the trust domain: heartbeats of others are dropped."""
    traffic_groups: tuple[TrafficGroupConfig, ...] = ()
    standalone_addresses: tuple[str, ...] = ()
    """Addresses of virtual servers of no known traffic group: held when this device is in no group."""
    offline: bool = False
    evacuated: bool = False

    def dump(self) -> dict[str, Any]:
        return {"device_id": self.device_id, "device_name": self.device_name, "key": self.key, "group": self.group,
                "interval": self.interval, "timeout": self.timeout,
                "peers": [vars(p) for p in self.peers], "trusted": sorted(self.trusted),
                "traffic_groups": [{"name": t.name, "ha_order": list(t.ha_order), "auto_failback": t.auto_failback,
                                    "addresses": list(t.addresses)} for t in self.traffic_groups],
                "standalone_addresses": list(self.standalone_addresses), "offline": self.offline,
                "evacuated": self.evacuated}

    @classmethod
    def load(cls, data: dict[str, Any]) -> "FailoverConfig":
        return cls(device_id=data["device_id"], device_name=data["device_name"], key=data["key"], group=data["group"],
                   interval=data["interval"], timeout=data["timeout"],
                   peers=tuple(Peer(**p) for p in data["peers"]), trusted=frozenset(data["trusted"]),
                   traffic_groups=tuple(TrafficGroupConfig(t["name"], tuple(t["ha_order"]), t["auto_failback"],
                                                           tuple(t["addresses"])) for t in data["traffic_groups"]),
                   standalone_addresses=tuple(data["standalone_addresses"]), offline=data["offline"],
                   evacuated=data["evacuated"])
