"""This device's failover state as the API shows it (`GET /api/failover/status`): the failover process's
last report, with the configuration it works from and ages brought up to now. Records encode to JSON
as they are (orjson encodes dataclasses)."""

from dataclasses import dataclass
from typing import Any

from tandem.failover.mirroring import MirroringReport
from tandem.failover.snapshot import TrackerReport
from tandem.ipc import ProcessStatus
from tandem.models.cluster import FULL_SCORE


@dataclass(frozen=True)
class TrafficGroupMember:
    name: str
    alive: bool
    offline: bool
    state: str
    last_heard_s: float | None
    """Seconds since its last heartbeat (None: this device, or never heard)."""
    score: int = FULL_SCORE
    """Its score for the traffic group (`FULL_SCORE` less the weights of its trackers down)."""
    down: tuple[str, ...] = ()
    """Its trackers of the group that are down."""


@dataclass(frozen=True)
class TrafficGroupStatus:
    name: str
    state: str
    """This device's state for it."""
    active_device: str | None
    declined: bool
    ha_order: tuple[str, ...]
    addresses: tuple[str, ...]
    auto_failback: bool
    members: tuple[TrafficGroupMember, ...]
    address_errors: dict[str, str]
    """Its floating addresses (its own and its virtual servers') this device cannot add now, with why."""
    mirroring: MirroringReport | None = None
    """Its connections mirrored to the peer: conntrackd's figures (None: it does not mirror)."""


@dataclass(frozen=True)
class DataplaneStatus:
    answering: bool
    silent_s: float | None
    """Seconds the data plane process has not answered (None: it answers)."""


@dataclass(frozen=True)
class FailoverStatus:
    device: str
    device_group: str | None
    offline: bool
    """This device takes no traffic group: offline, evacuated, or its data plane does not answer."""
    evacuated: bool
    state: str
    reason: str
    heartbeat: dict[str, Any]
    """The heartbeat counters (once the failover process reported), the interval, the fixed timeout (None:
    adaptive), `detection` (adaptive or fixed) and, by member name, what its heartbeats showed
    (`deadline_s`: the silence it is allowed now, `lost`, `longest_lost_run`, `latest_ms`) and `paths`: each
    heartbeat path from it (`address`, `up`, `last_heard_s`, `received`, `deadline_s`)."""
    dataplane: DataplaneStatus
    process: ProcessStatus
    traffic_groups: tuple[TrafficGroupStatus, ...]
    trackers: tuple[TrackerReport, ...] = ()
    """This device's trackers (those its traffic groups name): up or down, why, since when."""
