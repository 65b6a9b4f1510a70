"""Lasting faults of the failover process (a floating address it cannot add, a member whose clock is off), logged
when they begin or change, again every `REPEAT_EVERY` seconds while they last, and when they end: a fault retried
many times a second is still a few log lines."""

import logging
import time
from dataclasses import dataclass

REPEAT_EVERY = 60.0
"""Seconds between two warnings of the same lasting fault."""


@dataclass
class _Fault:
    message: str
    since: float
    logged: float


class Faults:
    """The faults of one kind of thing, by key (an address, a device): what each is now and since when."""

    def __init__(self, log: logging.Logger, what: str, repeat: float = REPEAT_EVERY) -> None:
        self._log = log
        self._what = what
        self._repeat = repeat
        self._faults: dict[str, _Fault] = {}

    def fail(self, key: str, message: str) -> None:
        """`key` is at fault (again): a warning if this is new, changed, or last said `repeat` seconds ago."""
        now = time.monotonic()
        fault = self._faults.get(key)
        if fault is None or fault.message != message:
            self._faults[key] = _Fault(message, now, now)
            self._log.warning("%s %s: %s", self._what, key, message)
        elif now - fault.logged >= self._repeat:
            fault.logged = now
            self._log.warning("%s %s: %s (for %.0f s)", self._what, key, message, now - fault.since)

    def clear(self, key: str) -> None:
        """`key` is no longer at fault (said once, if it was)."""
        if self._faults.pop(key, None) is not None:
            self._log.info("%s %s: no longer failing", self._what, key)

    def keys(self) -> set[str]:
        return set(self._faults)

    def messages(self) -> dict[str, str]:
        """What is wrong now, by key."""
        return {key: fault.message for key, fault in sorted(self._faults.items())}
