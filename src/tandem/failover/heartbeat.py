"""Heartbeats: small UDP datagrams, authenticated with HMAC-SHA256 under a key derived from the
trust domain's secret, numbered so that a replayed one is recognised and dropped, and stamped with the
sender's clock so that one from outside `CLOCK_WINDOW` (an old capture) is dropped too."""

import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

import orjson
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tandem.models.cluster import FULL_SCORE

TAG_BYTES = 32
MAX_DATAGRAM = 8192
MAX_PATHS = 8
"""Heartbeat paths of a device at most: its peer address and up to 7 dedicated heartbeat addresses."""
CLOCK_WINDOW = 30.0
"""Seconds a heartbeat's time may be off the receiver's clock (the members' clocks are kept in step, NTP)."""


def heartbeat_key(domain_secret: str) -> bytes:
    """The key heartbeats are signed with: HKDF-SHA256 of the domain secret."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"tandem heartbeat v1").derive(
        bytes.fromhex(domain_secret))


class GroupState(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: str = Field(pattern=r"^(active|standby|offline)$")
    declined: bool = False
    score: int = Field(FULL_SCORE, ge=0, le=FULL_SCORE)
    down: tuple[Annotated[str, Field(max_length=300, pattern=r"^[^\x00-\x1f\x7f]*$")], ...] = Field((),
                                                                                            max_length=16)
    """The sender's trackers of the group that are down."""


class Heartbeat(BaseModel):
    """What a device says of itself, every heartbeat interval."""

    model_config = ConfigDict(extra="forbid")

    device: str = Field(min_length=1, max_length=64)
    boot: int = Field(ge=0)
    seq: int = Field(ge=0)
    time: float
    offline: bool
    groups: dict[str, GroupState] = Field(max_length=256)
    path: int = Field(0, ge=0, lt=MAX_PATHS)
    """The path it was sent on (0: the peer addresses; 1...: the dedicated heartbeat addresses, in order), signed
    with the rest: replays are checked per path, and one copy replayed counts for its own path only."""


def seal(key: bytes, heartbeat: Heartbeat) -> bytes:
    """The heartbeat signed, fields at their defaults left out: a device of the release before reads one whose
    trackers are all up (it refuses fields it does not know), and the datagram stays small."""
    payload = orjson.dumps(heartbeat.model_dump(exclude_defaults=True))
    return hmac.new(key, payload, hashlib.sha256).digest() + payload


@dataclass
class Counters:
    received: int = 0
    forged: int = 0
    replayed: int = 0
    stale: int = 0
    """Heartbeats stamped outside the clock window (an old capture replayed, or a member's clock is off)."""
    malformed: int = 0
    sent: int = 0
    late: int = 0
    """Heartbeats sent more than half an interval after their time (this process was held)."""


@dataclass
class Receiver:
    """Checks heartbeats: authentic, well formed, stamped within the clock window, newer than the last one of
    their sender."""

    key: bytes
    counters: Counters = field(default_factory=Counters)
    last: dict[str, tuple[int, int]] = field(default_factory=dict)
    """The greatest (boot, seq) heard of each sender (the failover process keeps it across its restarts)."""
    on_path: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict, init=False)
    """The greatest (boot, seq) heard of each sender on each path."""
    on_stale: Callable[[str, float], None] = lambda device, skew: None
    """Told of each stale heartbeat: its sender, how far its time was off this clock (seconds, + ahead)."""

    def __post_init__(self) -> None:
        self._floor = dict(self.last)
        """What the last run heard of each sender: a path first heard in this run is checked against it."""

    def open(self, datagram: bytes) -> tuple[Heartbeat, bool] | None:
        """The heartbeat in `datagram`, and whether it is the first of its number (the same one comes on every
        path); None (counted) if it is forged, malformed, stale or a replay on its path."""
        tag, payload = datagram[:TAG_BYTES], datagram[TAG_BYTES:]
        if len(datagram) > MAX_DATAGRAM or not hmac.compare_digest(
                tag, hmac.new(self.key, payload, hashlib.sha256).digest()):
            self.counters.forged += 1
            return None
        try:
            heartbeat = Heartbeat.model_validate(orjson.loads(payload))
        except (orjson.JSONDecodeError, ValidationError):
            self.counters.malformed += 1
            return None
        skew = heartbeat.time - time.time()
        if not abs(skew) <= CLOCK_WINDOW:  # NaN and infinities too
            self.counters.stale += 1
            self.on_stale(heartbeat.device, skew)
            return None
        stamp, path = (heartbeat.boot, heartbeat.seq), (heartbeat.device, heartbeat.path)
        if stamp <= self.on_path.get(path, self._floor.get(heartbeat.device, (-1, -1))):
            self.counters.replayed += 1
            return None
        self.on_path[path] = stamp
        first = stamp > self.last.get(heartbeat.device, (-1, -1))
        if first:
            self.last[heartbeat.device] = stamp
            self.counters.received += 1  # once per heartbeat, as `sent` counts (each path's copies: `Paths`)
        return heartbeat, first


@dataclass
class Sender:
    """Numbers this device's heartbeats: a boot epoch (so a restart never reuses numbers: the failover process
    starts it above the last one it kept) and a sequence."""

    device: str
    boot: int = field(default_factory=time.time_ns)
    seq: int = 0

    def next(self, offline: bool, groups: dict[str, GroupState]) -> Heartbeat:
        """The next heartbeat, of path 0 (`model_copy(update={"path": n})` for the others)."""
        self.seq += 1
        return Heartbeat(device=self.device, boot=self.boot, seq=self.seq, time=time.time(), offline=offline,
                         groups=groups)
