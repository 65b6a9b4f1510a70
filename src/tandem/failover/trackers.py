"""Health trackers: what a device checks of its own surroundings for its traffic groups (`models.cluster.Tracker`).

Each distinct tracker the traffic groups name runs once, every `interval`: `gateway` sends an ICMP echo to its
address (a raw socket: root or CAP_NET_RAW), `script` runs its executable (no shell, out of the failover
process's real-time scheduling, killed with its process group past `timeout`). It goes down after `fall` failed
checks in a row and up again after `rise` passed ones; each change is logged and re-judges the traffic groups.
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
from tandem.models.cluster import FULL_SCORE, Tracker
from tandem.tasks import cancel

log = logging.getLogger("tandem.failover.trackers")

PING_THREADS = 4
TrackerKey = tuple[str, str, float, float, int, int]
"""What makes two trackers the same check: type, target, interval, timeout, fall, rise (not the weight)."""


def key_of(tracker: Tracker) -> TrackerKey:
    return tracker.type, tracker.target, tracker.interval, tracker.timeout, tracker.fall, tracker.rise


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

    def __init__(self, on_change: Callable[[], None]) -> None:
        self._on_change = on_change
        self._pings = ThreadPoolExecutor(PING_THREADS, thread_name_prefix="ping")
        """Pings wait here, not in the default pool, where the floating addresses are added."""
        self._tasks: dict[TrackerKey, asyncio.Task] = {}
        self.states: dict[TrackerKey, TrackerState] = {}

    def configure(self, trackers: Iterable[Tracker]) -> None:
        """Run exactly these trackers (a tracker already running keeps its state)."""
        wanted = {key_of(tracker): tracker for tracker in trackers}
        for key in self._tasks.keys() - wanted.keys():
            self._tasks.pop(key).cancel()
            del self.states[key]
        for key, tracker in wanted.items():
            if key not in self._tasks:
                self.states[key] = TrackerState()
                self._tasks[key] = asyncio.get_running_loop().create_task(self._run(key, tracker))

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

    async def _run(self, key: TrackerKey, tracker: Tracker) -> None:
        state = self.states[key]
        ident, seq = random.randrange(1, 0xFFFF), 0
        while True:
            started = time.monotonic()
            try:
                ok, why = await self._check(tracker, ident, seq := (seq + 1) & 0xFFFF)
            except Exception as error:  # a tracker must never stop: a failed check
                log.exception("tracker %s failed", tracker.describe())
                ok, why = False, f"check failed: {error}"
            try:
                self._checked(tracker, state, ok, why)
            except Exception:
                log.exception("judging the traffic groups after tracker %s changed failed", tracker.describe())
            await asyncio.sleep(max(0.0, tracker.interval - (time.monotonic() - started)))

    async def _check(self, tracker: Tracker, ident: int, seq: int) -> tuple[bool, str]:
        if tracker.type == "script":
            return await run_script(tracker.target, tracker.timeout)
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
        if state.up is None:  # the first check decides
            state.up, state.why, state.changed_at = ok, why, time.time()
            log.info("tracker %s %s%s", tracker.describe(), "up" if ok else "down: ", why)
        elif state.up and state.failed >= tracker.fall:
            state.up, state.why, state.changed_at = False, why, time.time()
            log.warning("tracker %s down: %s", tracker.describe(), why)
        elif not state.up and state.passed >= tracker.rise:
            state.up, state.why, state.changed_at = True, "", time.time()
            log.info("tracker %s up", tracker.describe())
        else:
            return
        self._on_change()
