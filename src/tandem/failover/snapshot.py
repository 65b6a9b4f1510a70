"""What the failover process needs to know, handed to it by the management process as one snapshot
whenever it changes (it never reads the store or the trust domain itself)."""

from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter

from tandem.failover.detector import PathReport
from tandem.failover.heartbeat import Counters
from tandem.failover.mirroring import MirroringReport
from tandem.models.cluster import FULL_SCORE, HEARTBEAT_INTERVAL, Tracker


@dataclass(frozen=True)
class Peer:
    """A member of this device's sync-failover group (this device included)."""

    id: str
    name: str
    host: str
    port: int
    """Where its heartbeats go (its peer channel's address, UDP): path 0."""
    heartbeat: tuple[tuple[str, int], ...] = ()
    """Its dedicated heartbeat addresses: paths 1, 2...."""

    @property
    def paths(self) -> tuple[tuple[str, int], ...]:
        """Where its heartbeats go, by path."""
        return ((self.host, self.port), *self.heartbeat)


@dataclass(frozen=True)
class TrafficGroupConfig:
    name: str
    ha_order: tuple[str, ...]
    auto_failback: bool
    addresses: tuple[str, ...]
    """Its floating addresses and those of its virtual servers: held while this device is active for it."""
    mirroring: bool = False
    failback_delay: float = 0.0
    quorum: bool = False
    trackers: tuple[Tracker, ...] = ()
    score_hold: float = 0.5


@dataclass(frozen=True)
class FailoverConfig:
    device_id: str
    device_name: str
    key: str
    """The heartbeat key (hex), derived from the trust domain's secret."""
    group: str | None = None
    """This device's sync-failover group (None: it serves on its own)."""
    interval: float = HEARTBEAT_INTERVAL
    timeout: float | None = None
    """The group's fixed heartbeat timeout (None: adaptive detection, `detector.py`)."""
    peers: tuple[Peer, ...] = ()
    trusted: frozenset[str] = frozenset()
    """Ids of the devices of the trust domain: heartbeats of others are dropped."""
    traffic_groups: tuple[TrafficGroupConfig, ...] = ()
    standalone_addresses: tuple[str, ...] = ()
    """Addresses of virtual servers of no known traffic group: held when this device is in no group."""
    offline: bool = False
    evacuated: bool = False

    def dump(self) -> dict[str, Any]:
        """The wire form (JSON types)."""
        return _CONFIG.dump_python(self, mode="json")

    @classmethod
    def load(cls, data: object) -> "FailoverConfig":
        return _CONFIG.validate_python(data)


@dataclass(frozen=True)
class MemberReport:
    """One member of a traffic group as the failover process sees it."""

    name: str
    id: str
    alive: bool
    offline: bool
    state: str
    last_heard_s: float | None
    """Seconds since its last heartbeat when the report was made (None: this device, or never heard)."""
    score: int = FULL_SCORE
    down: tuple[str, ...] = ()
    """Its trackers of the group that are down."""


@dataclass(frozen=True)
class TrafficGroupReport:
    name: str
    state: str
    """This device's state for it."""
    active_device: str | None
    declined: bool
    ha_order: tuple[str, ...]
    """The members in the order they take it."""
    members: tuple[MemberReport, ...]
    mirroring: MirroringReport | None = None
    """Its connections mirrored to the peer (None: it does not mirror)."""


@dataclass(frozen=True)
class PathState:
    """One heartbeat path from a member: up while its heartbeats come on it within the silence allowed."""

    address: str
    """The member's address of the path (host:port)."""
    up: bool
    last_heard_s: float | None
    """Seconds since a heartbeat came on it (None: none since this process started)."""
    received: int
    deadline_s: float
    """The silence it is allowed now (its own failure detector)."""


@dataclass(frozen=True)
class PeerReport:
    name: str
    last_heard_s: float | None
    offline: bool
    """Its last heartbeat said it takes no traffic group (offline or evacuated)."""
    path: PathReport
    """What its heartbeats showed (the first of each number, whichever path brought it), and the silence it is
    allowed now."""
    paths: tuple[PathState, ...] = ()
    """Each heartbeat path from it: the peer address, then its dedicated heartbeat addresses."""


@dataclass(frozen=True)
class TrackerReport:
    """One of this device's trackers."""

    tracker: str
    """`gateway 198.18.0.1`, `script /usr/local/bin/check`."""
    up: bool
    why: str
    """Why it is down."""
    changed_at: float | None
    """When it last went up or down (seconds since the epoch; None: never)."""


@dataclass(frozen=True)
class HeartbeatReport:
    interval: float
    timeout: float | None
    """The group's fixed timeout (None: adaptive detection)."""
    counters: Counters


@dataclass(frozen=True)
class FailoverReport:
    """The state the failover process reports to the management process, several times a second."""

    out_of_service: bool
    reason: str
    heartbeat: HeartbeatReport
    traffic_groups: tuple[TrafficGroupReport, ...]
    peers: dict[str, PeerReport]
    """By device id, this device excluded."""
    addresses: tuple[str, ...]
    """The floating addresses held."""
    address_errors: dict[str, str]
    dataplane_silent_s: float | None
    """Seconds the data plane process has not answered (None: it answers)."""
    trackers: tuple[TrackerReport, ...] = ()

    def traffic_group(self, name: str) -> TrafficGroupReport | None:
        return next((t for t in self.traffic_groups if t.name == name), None)

    def dump(self) -> dict[str, Any]:
        """The wire form (JSON types)."""
        return _REPORT.dump_python(self, mode="json")

    @classmethod
    def load(cls, data: object) -> "FailoverReport":
        return _REPORT.validate_python(data)


_CONFIG = TypeAdapter(FailoverConfig)
_REPORT = TypeAdapter(FailoverReport)
