"""What happened to a data plane engine that its counters do not say: HAProxy restarted after it died, a
configuration refused, a refused one served again. Kept in memory (the last `EVENTS_KEPT`), shown with the
engine's name, version and restart count in `GET /api/dataplane` (`engine`)."""

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

log = logging.getLogger("tandem.dataplane")

EVENTS_KEPT = 50

EngineEventKind = Literal["restarted", "refused", "recovered"]


@dataclass(frozen=True)
class EngineEvent:
    """One event: when (Unix time), what, and the engine's own words."""

    at: float
    kind: EngineEventKind
    message: str


@dataclass
class EngineEvents:
    """The last `EVENTS_KEPT` events of one engine, each also logged."""

    _events: deque[EngineEvent] = field(default_factory=lambda: deque(maxlen=EVENTS_KEPT))

    def record(self, kind: EngineEventKind, message: str) -> None:
        self._events.append(EngineEvent(time.time(), kind, message))
        log.warning("engine %s: %r", kind, message)

    def recent(self) -> list[EngineEvent]:
        """Oldest first."""
        return list(self._events)


@dataclass(frozen=True)
class EngineStatus:
    """The engine serving this device's traffic: which, how often its process was started again, its events."""

    name: str
    version: str
    restarts: int = 0
    events: list[EngineEvent] = field(default_factory=list)
