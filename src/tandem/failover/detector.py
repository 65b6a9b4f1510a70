"""When a member's silence means it is gone: a failure detector that adapts to what its own heartbeats show.

keepalived takes a master for gone after 3 adverts and a skew: on a clean link that is slower than it need
be, on a lossy or jittery one it fails over for nothing. A member's heartbeats are numbered and sent on a
fixed cadence, so this device sees on their path how many were lost in a row and how late they came; a
member is gone once silent for

    interval * (MISSES + the longest run lost + MARGIN) + the second-latest arrival

over the last `MEMORY` seconds, at most `MOST_MISSES` intervals. On a clean path that is 3 intervals and
a little (keepalived at the same advert interval: 3 adverts and up to 0.6 of one); on a path that lost 2
in a row within the last two minutes, 5 intervals and a little; heartbeats that came 40 ms late add 40 ms.
The single latest arrival is left out: one heartbeat held 78 ms while the lab formed had lengthened every
deadline of the next two minutes by half at a 0.05 s interval, whereas a path that is jittery is late again
and again (bench/failover.py: takeover against keepalived, spurious transitions under loss and delay).

A device group with a fixed `heartbeat_timeout` judges by that alone, as before.
"""

import time
from collections import deque
from dataclasses import dataclass

MISSES = 3
"""Heartbeats missed in a row, beyond what the path was seen to lose, before a member is gone."""
MOST_MISSES = 10
"""The longest silence adaptive detection waits for, in intervals."""
MARGIN = 0.1
"""Silence allowed beyond the intervals and the latest arrival seen, in intervals."""
MEMORY = 120.0
"""Seconds a loss or a late heartbeat is remembered."""
EXPIRY_SLACK = 0.001
"""Seconds after a deadline at which a silence is judged (so that it counts as expired)."""
WATCHDOG_INTERVALS = 5
"""Intervals the data plane may not answer before the device takes itself out of service (adaptive detection;
a fixed timeout is used as it is)."""


def first_deadline(interval: float, fixed: float | None) -> float:
    """The silence a member is allowed before anything is known of its path."""
    return fixed if fixed is not None else interval * (MISSES + MARGIN)


def watchdog(interval: float, fixed: float | None) -> float:
    """How long the data plane may not answer before the device takes itself out of service."""
    return fixed if fixed is not None else interval * WATCHDOG_INTERVALS


class _WindowMax:
    """The greatest value added within the last `MEMORY` seconds (a monotonic queue: O(1) amortised per value)."""

    def __init__(self) -> None:
        self._values: deque[tuple[float, float]] = deque()

    def add(self, at: float, value: float) -> None:
        while self._values and self._values[-1][1] <= value:
            self._values.pop()
        self._values.append((at, value))

    def greatest(self, now: float) -> float:
        while self._values and self._values[0][0] < now - MEMORY:
            self._values.popleft()
        return self._values[0][1] if self._values else 0.0


class _WindowSecond:
    """The second-greatest value added within about the last `MEMORY` seconds (whole buckets: a value is kept
    `MEMORY - BUCKET` to `MEMORY` seconds): the two greatest of each `BUCKET` seconds are kept, and the answer is
    cached until a value comes or a bucket goes."""

    BUCKET = 5.0

    def __init__(self) -> None:
        self._buckets: deque[list[float]] = deque()
        """[start, greatest, second greatest] of each bucket, oldest first."""
        self._cached: float | None = None

    def add(self, at: float, value: float) -> None:
        if not self._buckets or at >= self._buckets[-1][0] + self.BUCKET:
            self._buckets.append([at, value, 0.0])
        else:
            bucket = self._buckets[-1]
            if value > bucket[1]:
                bucket[1], bucket[2] = value, bucket[1]
            elif value > bucket[2]:
                bucket[2] = value
        self._cached = None

    def second(self, now: float) -> float:
        while self._buckets and self._buckets[0][0] < now - MEMORY:
            self._buckets.popleft()
            self._cached = None
        if self._cached is None:
            values = sorted((v for bucket in self._buckets for v in bucket[1:]), reverse=True)
            self._cached = values[1] if len(values) > 1 else 0.0
        return self._cached


@dataclass(frozen=True)
class PathReport:
    """What a member's heartbeats showed of their path, and the silence it is allowed now."""

    deadline_s: float
    lost: int
    """Heartbeats lost since this process started."""
    longest_lost_run: int
    """The most lost in a row within `MEMORY`."""
    latest_ms: float
    """The latest a heartbeat came after its time within `MEMORY`, the single latest left out, in milliseconds."""


class Detector:
    """Judges one member's silence from its heartbeats (`heard`): `deadline()` seconds after the last one."""

    def __init__(self, interval: float, fixed: float | None) -> None:
        self.interval = interval
        self.fixed = fixed
        self.lost = 0
        self._last: tuple[int, int, float] | None = None
        """(boot, sequence, arrival) of the last heartbeat heard."""
        self._runs = _WindowMax()
        self._lateness = _WindowSecond()

    def heard(self, boot: int, seq: int, at: float) -> None:
        """A heartbeat of the member, numbered `seq` in its boot `boot`, arrived at `at` (monotonic)."""
        last = self._last
        if last is not None and last[0] == boot and seq > last[1]:
            missing = seq - last[1] - 1
            if missing:
                self.lost += missing
                self._runs.add(at, missing)
            self._lateness.add(at, max(0.0, at - last[2] - self.interval * (seq - last[1])))
        self._last = (boot, seq, at)

    def deadline(self, now: float | None = None) -> float:
        """Seconds of silence after the last heartbeat before the member is gone."""
        if self.fixed is not None:
            return self.fixed
        now = time.monotonic() if now is None else now
        allowed = (self.interval * (MISSES + self._runs.greatest(now) + MARGIN) + self._lateness.second(now))
        return min(allowed, self.interval * MOST_MISSES)

    def report(self, now: float) -> PathReport:
        return PathReport(round(self.deadline(now), 3), self.lost, int(self._runs.greatest(now)),
                          round(self._lateness.second(now) * 1000, 1))
