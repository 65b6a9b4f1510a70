"""Pauses of Tandem's long-running processes: garbage collections made rarer and the long ones logged, and an
event loop held up logged with where it was held.

A full collection walks every object a process holds. With a large configuration (a device or an agent with
10,000 services) CPython's defaults ran one every few seconds while the heap grew, each stopping the
process for 0.3-1.6 s and finding nothing to free (bench/agent.py with these logs: a 1.6 s pause of the agent
held a takeover; a device's reached 1.0 s). Cycles still die young in the young generations; the whole heap
is walked only after `THRESHOLDS` allow it."""

import asyncio
import gc
import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable

log = logging.getLogger("tandem.pauses")

THRESHOLDS = (20_000, 10, 1_000)
"""For gc.set_threshold: 20,000 objects allocated between young collections (CPython 3.13's default: 2,000),
10 young collections per middle one (as CPython), 1,000 middle ones per full one (CPython: 10, and a quarter
more long-lived objects). Garbage in cycles that lived long is freed later (after about 2 * 10**8 objects
allocated): the full collections measured freed nothing, or a few thousand objects."""
LONG = 0.1
"""Seconds of a collection worth a log line."""
HELD = 1.0
"""Seconds an event loop may go without turning before it is logged, with the stack that holds it."""


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


async def watch_event_loop(threshold: float = HELD) -> None:
    """Until cancelled: log when this event loop goes `threshold` seconds without turning, with the stack of
    its thread at that moment (a watcher thread looks every tenth of a second), and how long it was held."""
    loop_thread = threading.get_ident()
    turned = time.monotonic()
    stopped = threading.Event()

    def watch() -> None:
        logged_for = None
        while not stopped.wait(0.1):
            since = turned
            if time.monotonic() - since >= threshold and logged_for != since:
                logged_for = since
                frame = sys._current_frames().get(loop_thread)
                stack = "".join(traceback.format_stack(frame, limit=12)) if frame is not None else "(no stack)\n"
                log.warning("the event loop has not turned for %.1f s; it is at:\n%s", time.monotonic() - since,
                            stack.rstrip())

    threading.Thread(target=watch, name="loop-watch", daemon=True).start()
    try:
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.1)
            turned = time.monotonic()
            if turned - before >= threshold:
                log.warning("the event loop was held %.1f s", turned - before - 0.1)
    finally:
        stopped.set()
