"""A hybrid logical clock: wall-clock milliseconds in the high bits, a counter in the low 16 bits."""

import time

COUNTER_BITS = 16


class HybridClock:
    """Timestamps that never go backwards and order causally related events across devices."""

    def __init__(self, last: int = 0) -> None:
        self.last = last

    def now(self) -> int:
        """A timestamp greater than every one this clock has issued or observed."""
        physical = (time.time_ns() // 1_000_000) << COUNTER_BITS
        self.last = physical if physical > self.last else self.last + 1
        return self.last

    def observe(self, remote: int) -> None:
        """Account for a timestamp seen from another device, so later local ones are greater."""
        self.last = max(self.last, remote)
