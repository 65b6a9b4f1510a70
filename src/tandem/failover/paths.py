"""Heartbeat paths: each member sends every heartbeat on each of its paths (its peer address, then its
dedicated heartbeat addresses), so that one NIC, cable or switch lost does not make it look gone. A member is
gone only when silent on every path (its own failure detector hears the first copy of each heartbeat, whichever
path brought it); each path is judged on its own too, by a detector of its own, so that the operator learns
of a path lost (an event, its state in status) while the others still carry the heartbeats."""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from tandem.failover.detector import EXPIRY_SLACK, Detector, first_deadline
from tandem.failover.snapshot import PathState


@dataclass
class _Path:
    detector: Detector
    heard_at: float | None = None
    received: int = 0
    up: bool = False
    expiry: asyncio.TimerHandle | None = field(default=None, repr=False)


class Paths:
    """The state of every heartbeat path from the members; `on_change(device, path, up, silence)` is told
    when one goes down (silent past its deadline) or comes back."""

    def __init__(self, on_change: Callable[[str, int, bool, float], None]) -> None:
        self._on_change = on_change
        self._paths: dict[tuple[str, int], _Path] = {}

    def heard(self, device: str, path: int, boot: int, seq: int, now: float, interval: float,
              fixed: float | None) -> None:
        """A heartbeat of `device` came on `path` at `now` (monotonic)."""
        state = self._paths.get((device, path))
        if state is None:
            state = self._paths[(device, path)] = _Path(Detector(interval, fixed))
        elif (state.detector.interval, state.detector.fixed) != (interval, fixed):  # the group's timers changed
            state.detector = Detector(interval, fixed)
        state.detector.heard(boot, seq, now)
        state.heard_at, state.received = now, state.received + 1
        if not state.up:
            state.up = True
            if state.received > 1:  # it came back (a path first heard now is no news)
                self._on_change(device, path, True, 0.0)
        if state.expiry is not None:
            state.expiry.cancel()
        state.expiry = asyncio.get_running_loop().call_later(state.detector.deadline(now) + EXPIRY_SLACK,
                                                             self._expire, device, path)

    def _expire(self, device: str, path: int) -> None:
        state = self._paths[(device, path)]
        state.up, state.expiry = False, None
        self._on_change(device, path, False, state.detector.deadline())

    def up(self, device: str, path: int) -> bool:
        state = self._paths.get((device, path))
        return state is not None and state.up

    def keep(self, paths: dict[str, int]) -> None:
        """Forget the paths of members gone from the group, and those beyond their number of paths (by device)."""
        for key in [k for k in self._paths if k[1] >= paths.get(k[0], 0)]:
            expiry = self._paths.pop(key).expiry
            if expiry is not None:
                expiry.cancel()

    def report(self, device: str, addresses: list[str], now: float, interval: float,
               fixed: float | None) -> tuple[PathState, ...]:
        """The state of each path of `device`, whose addresses are `addresses` (in path order)."""
        out = []
        for path, address in enumerate(addresses):
            state = self._paths.get((device, path))
            heard_at = state.heard_at if state else None
            out.append(PathState(
                address=address, up=bool(state and state.up),
                last_heard_s=round(now - heard_at, 3) if heard_at is not None else None,
                received=state.received if state else 0,
                deadline_s=round(state.detector.deadline(now) if state else first_deadline(interval, fixed), 3)))
        return tuple(out)

    def stop(self) -> None:
        self.keep({})
