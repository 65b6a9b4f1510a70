"""Health trackers: what a device checks of its own surroundings for its traffic groups (`models.cluster.Tracker`).

Each distinct tracker the traffic groups name runs once, every `interval`: `gateway` sends an ICMP echo to its
address (a raw socket: root or CAP_NET_RAW), `script` runs its executable (no shell, out of the failover
process's real-time scheduling, killed with its process group past `timeout`), `pool` reads the share of the
pool's members up from what the data plane process last said (it probes tracked pools whatever it serves). It
goes down after `fall` failed checks in a row and up again after `rise` passed ones. `interface` is not polled:
it follows netlink's link events (`links.py`) and changes at once. Each change is logged and re-judges the
traffic groups.
A traffic group's score on this device is `FULL_SCORE` less the weights of its trackers that are down.
"""

import asyncio
import contextlib
import logging
import os
import random
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from tandem import ipc
from tandem.failover.links import Links
from tandem.models.cluster import FULL_SCORE, Tracker
from tandem.tasks import cancel

log = logging.getLogger("tandem.failover.trackers")

PING_THREADS = 4
TrackerKey = tuple[str, str, float, float, int, int, int | None]
"""What makes two trackers the same check: type, target, interval, timeout, fall, rise, threshold (not the
weight)."""
PoolAvailability = Callable[[str], tuple[int, int] | str | None]
"""A pool's enabled members up and judged (probed: up or down), by its path; why it is down (there is no such
pool); or None: not known yet (the data plane has not answered, or has probed none of its members)."""


def key_of(tracker: Tracker) -> TrackerKey:
    return (tracker.type, tracker.target, tracker.interval, tracker.timeout, tracker.fall, tracker.rise,
            tracker.threshold)


def pool_verdict(availability: tuple[int, int] | str | None, threshold: int) -> tuple[bool, str] | None:
    """Whether a pool with `availability` (members up, judged) passes `threshold` percent, and why not (None: not
    known yet)."""
    if availability is None or isinstance(availability, str):
        return None if availability is None else (False, availability)
    up, judged = availability
    if judged and up * 100 >= threshold * judged:
        return True, ""
    return False, f"{up} of {judged} members up ({threshold}% needed)"


def internet_checksum(data: bytes) -> int:
    """The ones' complement sum of RFC 1071 (ICMP, IP, TCP, UDP)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ping(address: str, timeout: float, ident: int, seq: int) -> bool:
    """Whether `address` answers an ICMP echo within `timeout` seconds (blocking; OSError if it cannot be sent)."""
    body = struct.pack("!d", time.monotonic())
    header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    packet = struct.pack("!BBHHH", 8, 0, internet_checksum(header + body), ident, seq) + body
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        sock.sendto(packet, (address, 0))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data, (source, _) = sock.recvfrom(2048)
            except TimeoutError:
                return False
            icmp = data[(data[0] & 0x0F) * 4:]
            if source == address and len(icmp) >= 8 and icmp[0] == 0 and struct.unpack("!HH", icmp[4:8]) == (
                    ident, seq):
                return True
    return False


async def run_script(path: str, timeout: float) -> tuple[bool, str]:
    """Whether the script exits 0 within `timeout` seconds, and why not."""
    try:
        process = await asyncio.create_subprocess_exec(
            path, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL, preexec_fn=ipc.out_of_realtime, start_new_session=True)
    except (OSError, subprocess.SubprocessError) as error:
        return False, f"cannot run: {error}"
    try:
        async with asyncio.timeout(timeout):
            code = await process.wait()
    except BaseException as error:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await asyncio.shield(process.wait())
        if not isinstance(error, TimeoutError):
            raise
        return False, f"no answer within {timeout:g} s"
    return code == 0, "" if code == 0 else f"exited with {code}"


@dataclass
class TrackerState:
    """A tracker as checked so far: unknown (`up` None, which scores as down: a device that just started must not
    outscore the others before it checked) until its first check."""

    up: bool | None = None
    why: str = "not checked yet"
    changed_at: float | None = None
    """When it last went up or down (seconds since the epoch; None: never)."""
    passed: int = 0
    failed: int = 0


class Tracking:
    """Runs the trackers the traffic groups name and keeps their states; `on_change` is called when one goes up or
    down."""

    def __init__(self, on_change: Callable[[], None], pools: PoolAvailability) -> None:
        self._on_change = on_change
        self._pools = pools
        self._links: Links | None = None
        """The interfaces, watched while an interface tracker is configured."""
        self._interfaces: dict[TrackerKey, Tracker] = {}
        self._pings = ThreadPoolExecutor(PING_THREADS, thread_name_prefix="ping")
        """Pings wait here, not in the default pool, where the floating addresses are added."""
        self._tasks: dict[TrackerKey, asyncio.Task] = {}
        self.states: dict[TrackerKey, TrackerState] = {}

    def configure(self, trackers: Iterable[Tracker]) -> None:
        """Run exactly these trackers (a tracker already running keeps its state)."""
        wanted = {key_of(tracker): tracker for tracker in trackers}
        for key in self.states.keys() - wanted.keys():
            if key in self._tasks:
                self._tasks.pop(key).cancel()
            self._interfaces.pop(key, None)
            del self.states[key]
        for key, tracker in wanted.items():
            if key in self.states:
                continue
            self.states[key] = TrackerState()
            if tracker.type == "interface":
                self._interfaces[key] = tracker
            else:
                self._tasks[key] = asyncio.get_running_loop().create_task(self._run(key, tracker))
        if self._interfaces and self._links is None:
            self._links = Links(self._links_changed)
        elif not self._interfaces and self._links is not None:
            self._links.stop()
            self._links = None
        self._links_changed()  # a new interface tracker is judged on what is known

    def score(self, trackers: Iterable[Tracker]) -> tuple[int, tuple[str, ...]]:
        """A traffic group's score with these trackers, and those down."""
        down = [tracker for tracker in trackers if not self.states.get(key_of(tracker), TrackerState()).up]
        if len({key_of(tracker) for tracker in down}) != len(down):  # the same check named twice counts once
            down = list({key_of(tracker): tracker for tracker in down}.values())
        return max(0, FULL_SCORE - sum(t.weight for t in down)), tuple(t.describe() for t in down)

    async def stop(self) -> None:
        for task in list(self._tasks.values()):
            await cancel(task)
        self._tasks.clear()
        self._pings.shutdown(wait=False, cancel_futures=True)
        if self._links is not None:
            self._links.stop()

    def _links_changed(self) -> None:
        """Judge the interface trackers on what netlink said (at once: no fall, no rise)."""
        links = self._links
        if links is None or not links.ready:
            return
        for key, tracker in self._interfaces.items():
            why = links.why_down(tracker.target)
            state = self.states[key]
            if state.up is None or state.up != (not why) or (why and why != state.why):
                self._set(tracker, state, not why, why)

    async def _run(self, key: TrackerKey, tracker: Tracker) -> None:
        state = self.states[key]
        ident, seq = random.randrange(1, 0xFFFF), 0
        while True:
            started = time.monotonic()
            try:
                verdict = await self._check(tracker, ident, seq := (seq + 1) & 0xFFFF)
            except Exception as error:  # a tracker must never stop: a failed check
                log.exception("tracker %s failed", tracker.describe())
                verdict = False, f"check failed: {error}"
            try:
                if verdict is not None:  # None: nothing to judge by yet, the state stays as it is
                    self._checked(tracker, state, *verdict)
            except Exception:
                log.exception("judging the traffic groups after tracker %s changed failed", tracker.describe())
            await asyncio.sleep(max(0.0, tracker.interval - (time.monotonic() - started)))

    async def _check(self, tracker: Tracker, ident: int, seq: int) -> tuple[bool, str] | None:
        if tracker.type == "script":
            return await run_script(tracker.target, tracker.timeout)
        if tracker.type == "pool":
            return pool_verdict(self._pools(tracker.target), tracker.threshold or 0)
        try:
            ok = await asyncio.get_running_loop().run_in_executor(self._pings, ping, tracker.target, tracker.timeout,
                                                                  ident, seq)
        except PermissionError as error:  # no raw socket without root or CAP_NET_RAW
            return False, f"cannot check: {error.strerror or error}"
        except OSError as error:  # no route (a blackhole: EINVAL), the interface down
            return False, f"unreachable: {error.strerror or error}"
        return ok, "" if ok else f"no answer within {tracker.timeout:g} s"

    def _checked(self, tracker: Tracker, state: TrackerState, ok: bool, why: str) -> None:
        state.passed, state.failed = (state.passed + 1, 0) if ok else (0, state.failed + 1)
        if state.up is None or (state.up and state.failed >= tracker.fall) or (
                not state.up and state.passed >= tracker.rise):  # the first check decides
            self._set(tracker, state, ok, why)

    def _set(self, tracker: Tracker, state: TrackerState, ok: bool, why: str) -> None:
        """The tracker is up (`ok`) or down because `why`: logged, and the traffic groups judged again."""
        first = state.up is None
        if state.up != ok:
            state.changed_at = time.time()
        state.up, state.why = ok, "" if ok else why
        if ok:
            log.info("tracker %s up", tracker.describe())
        else:
            (log.info if first else log.warning)("tracker %s down: %s", tracker.describe(), why)
        self._on_change()
