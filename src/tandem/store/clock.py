"""A hybrid logical clock: wall-clock milliseconds in the high bits, a counter in the low 16 bits."""

import threading
import time
from dataclasses import dataclass
from typing import Self

COUNTER_BITS = 16


@dataclass(frozen=True, slots=True, order=True)
class Stamp:
    """A version's place in the order every device agrees on: (hybrid-clock stamp, origin device id).
    As text (`str(stamp)`), fixed-width hexadecimal then the origin: text order is stamp order."""

    hlc: int
    origin: str

    def __str__(self) -> str:
        return f"{self.hlc:016x}.{self.origin}"

    @classmethod
    def parse(cls, text: str) -> Self:
        """The stamp written as `str(stamp)`; ValueError if malformed."""
        hlc, sep, origin = text.partition(".")
        if not sep or len(hlc) != 16 or not origin:
            raise ValueError(f"{text!r} is not a stamp")
        return cls(int(hlc, 16), origin)


class HybridClock:
    """Timestamps that never go backwards and order causally related events across devices."""

    def __init__(self, last: int = 0) -> None:
        self.last = last
        self._lock = threading.Lock()

    def now(self) -> int:
        """A timestamp greater than every one this clock has issued or observed (from any thread)."""
        physical = (time.time_ns() // 1_000_000) << COUNTER_BITS
        with self._lock:
            self.last = physical if physical > self.last else self.last + 1
            return self.last

    def reserve(self, count: int) -> int:
        """The first of `count` timestamps nobody else will get from this clock (for a draft computed elsewhere)."""
        with self._lock:
            physical = (time.time_ns() // 1_000_000) << COUNTER_BITS
            first = physical if physical > self.last else self.last + 1
            self.last = first + count - 1
            return first

    def observe(self, remote: int) -> None:
        """Account for a timestamp seen from another device, so later local ones are greater."""
        with self._lock:
            self.last = max(self.last, remote)
