"""The garbage collector of Tandem's long-running processes: collections made rarer, and the long ones logged.

A full collection walks every object a process holds. With a large configuration (a device or an agent with
10,000 services) CPython's defaults ran one every few seconds while the heap grew, each stopping the
process for 0.3-1.6 s and finding nothing to free (bench/agent.py with these logs: a 1.6 s pause of the agent
held a takeover, and one of a device a 3.3 s endpoint change). Cycles still die young in the young
generations; the whole heap is walked only after `THRESHOLDS` allow it."""

import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger("tandem.pauses")

THRESHOLDS = (20_000, 10, 1_000)
"""For gc.set_threshold: 20,000 objects allocated between young collections (CPython 3.13's default: 2,000),
10 young collections per middle one (as CPython), 1,000 middle ones per full one (CPython: 10, and a quarter
more long-lived objects). Garbage in cycles that lived long is freed later (after about 2 * 10**8 objects
allocated): the full collections measured freed nothing, or a few thousand objects."""
LONG = 0.1
"""Seconds of a collection worth a log line."""


def configure_collections() -> None:
    """Collect as `THRESHOLDS` say, and log the collections that take `LONG` or more."""
    gc.set_threshold(*THRESHOLDS)
    log_long_collections()


def log_long_collections(threshold: float = LONG) -> Callable[[str, dict[str, int]], None]:
    """From now on, log each collection of this process that takes `threshold` seconds or more; the callback
    added to `gc.callbacks` is returned."""
    started: list[float] = []

    def timed(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[:] = [time.perf_counter()]
            return
        if not started:
            return
        took = time.perf_counter() - started.pop()
        if took >= threshold:
            log.warning("garbage collection (generation %d) paused the process %.2f s, %d objects collected",
                        info["generation"], took, info["collected"])

    gc.callbacks.append(timed)
    return timed
