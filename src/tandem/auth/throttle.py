"""Back-off after failed logins, per (user, source address) and per source address.

Each key counts its failures. Up to `FREE_FAILURES` (a pair) or `SOURCE_FREE_FAILURES` (a source,
whatever the user names) cost nothing; from then on the key is refused (`TooManyRequests`, 429 with
`Retry-After`) until `BASE_DELAY * 2 ** (failures - free)` seconds (at most `MAX_DELAY`) have passed
since its last failure. A user's own login from another address is never held back by failures from
this one. An attempt counts as a failure from the moment it starts (so that parallel guesses do not
slip past the limit); a success takes it back and clears the pair. A key is forgotten `FORGET_AFTER`
seconds after its last failure.
"""

import logging
import math
import time
from dataclasses import dataclass

from tandem.errors import TooManyRequests
from tandem.models.api import LoginStats

FREE_FAILURES = 5
SOURCE_FREE_FAILURES = 20
BASE_DELAY = 5.0
MAX_DELAY = 300.0
FORGET_AFTER = 900.0
MAX_KEYS = 10_000

log = logging.getLogger("tandem.auth")

Key = tuple[str, ...]


@dataclass
class Failures:
    """The failed logins of one key: how many, when the last one started, and whether its burst was logged."""

    free: int
    count: int = 0
    last: float = 0.0
    logged: bool = False

    def wait(self, now: float) -> float:
        """Seconds until this key may try again (0: it may now)."""
        if self.count < self.free:
            return 0.0
        return max(0.0, self.last + min(BASE_DELAY * 2 ** (self.count - self.free), MAX_DELAY) - now)


class LoginThrottle:
    """The failure records of one device's logins (HTTP Basic included), and their counters."""

    def __init__(self) -> None:
        self._records: dict[Key, Failures] = {}
        self._failed = 0
        self._throttled = 0

    def begin(self, username: str, source: str) -> None:
        """Refuse with `TooManyRequests` while `source`, or `username` from it, is backing off; else count
        the attempt as a failure until `succeeded` takes it back."""
        now = time.monotonic()
        keys = _keys(username, source)
        wait = max(self._record(key).wait(now) for key in keys)
        if wait > 0:
            self._throttled += 1
            raise TooManyRequests(f"too many failed logins: try again in {math.ceil(wait)} s", wait)
        for key in keys:
            record = self._record(key)
            record.count += 1
            record.last = now

    def succeeded(self, username: str, source: str) -> None:
        """The attempt begun was right: clear the pair, and take the attempt back from the source."""
        pair, alone = _keys(username, source)
        self._records.pop(pair, None)
        record = self._records.get(alone)
        if record is not None:
            record.count -= 1
            if record.count <= 0:
                del self._records[alone]

    def failed(self, username: str, source: str) -> None:
        """The attempt begun was wrong: its keys back off from now; log the first time each key of a burst
        reaches its limit."""
        self._failed += 1
        now = time.monotonic()
        for key in _keys(username, source):
            record = self._record(key)
            record.last = now
            if record.count >= record.free and not record.logged:
                record.logged = True
                who = f"user {username!r} from {source}" if len(key) == 2 else f"source {source}"
                log.warning("login throttled: %d failed logins for %s; further attempts back off (up to %.0f s)",
                            record.count, who, MAX_DELAY)

    def stats(self) -> LoginStats:
        """Failed logins and refused attempts since the device started, and the keys backing off now."""
        now = time.monotonic()
        return LoginStats(failed=self._failed, throttled=self._throttled,
                          backing_off=sum(1 for r in self._records.values() if r.wait(now) > 0))

    def _record(self, key: Key) -> Failures:
        """The record of `key`: a new one when it had none or its last failure is `FORGET_AFTER` old."""
        now = time.monotonic()
        record = self._records.get(key)
        if record is None or now - record.last >= FORGET_AFTER:
            if len(self._records) >= MAX_KEYS:
                self._forget(now)
            record = self._records[key] = Failures(FREE_FAILURES if len(key) == 2 else SOURCE_FREE_FAILURES,
                                                   last=now)
        return record

    def _forget(self, now: float) -> None:
        """Drop the keys idle for `FORGET_AFTER`; if still too many, the least recently failed half."""
        self._records = {k: r for k, r in self._records.items() if now - r.last < FORGET_AFTER}
        if len(self._records) >= MAX_KEYS:
            kept = sorted(self._records.items(), key=lambda item: item[1].last)[len(self._records) // 2:]
            self._records = dict(kept)


def _keys(username: str, source: str) -> tuple[Key, Key]:
    return (username, source), (source,)
