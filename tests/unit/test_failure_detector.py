"""The failure detector: 3 intervals and a little on a clean path, longer on one that lost heartbeats in a row or
delivered them late, for as long as that is remembered; a fixed timeout is kept as it is."""

import asyncio
import time

from tandem.failover.detector import MEMORY, MOST_MISSES, Detector, first_deadline, watchdog
from tandem.failover.paths import Paths

INTERVAL = 0.2


def beats(detector: Detector, seqs: list[int], start: float = 100.0, late: dict[int, float] | None = None) -> float:
    """Heartbeats `seqs` (of boot 1) arriving on their cadence (`late`: seconds after it, by seq); the last arrival."""
    at = start
    for seq in seqs:
        at = start + seq * INTERVAL + (late or {}).get(seq, 0.0)
        detector.heard(1, seq, at)
    return at


def test_a_clean_path_allows_three_intervals_and_a_tenth() -> None:
    detector = Detector(INTERVAL, None)
    assert detector.deadline(0.0) == first_deadline(INTERVAL, None)
    last = beats(detector, list(range(50)))
    assert abs(detector.deadline(last) - 3.1 * INTERVAL) < 1e-9
    report = detector.report(last)
    assert (report.lost, report.longest_lost_run, report.latest_ms) == (0, 0, 0.0)


def test_runs_lost_in_a_row_lengthen_the_deadline_until_forgotten() -> None:
    detector = Detector(INTERVAL, None)
    seqs = [s for s in range(50) if s not in (10, 20, 21)]  # one lost, then two in a row
    last = beats(detector, seqs)
    assert abs(detector.deadline(last) - 5.1 * INTERVAL) < 1e-9
    assert detector.report(last).lost == 3 and detector.report(last).longest_lost_run == 2
    assert abs(detector.deadline(last + MEMORY + 1) - 3.1 * INTERVAL) < 1e-9


def test_late_heartbeats_add_their_lateness_but_one_alone_does_not() -> None:
    detector = Detector(INTERVAL, None)
    last = beats(detector, list(range(20)), late={7: 0.078})
    assert abs(detector.deadline(last) - 3.1 * INTERVAL) < 1e-9  # one heartbeat held once: no longer deadline
    last = beats(detector, list(range(20, 200)), late={30: 0.04, 190: 0.03})  # late again, 30 s later
    assert abs(detector.deadline(last) - (3.1 * INTERVAL + 0.04)) < 1e-9
    assert detector.report(last).latest_ms == 40.0
    assert abs(detector.deadline(last + 83) - (3.1 * INTERVAL + 0.03)) < 1e-9  # the 78 ms one forgotten
    assert abs(detector.deadline(last + MEMORY - 5) - 3.1 * INTERVAL) < 1e-9  # 40 ms too: the 30 ms one is alone


def test_the_deadline_is_bounded_and_a_restart_starts_a_new_count() -> None:
    detector = Detector(INTERVAL, None)
    last = beats(detector, [0, 1, 30])  # 28 lost in a row
    assert detector.deadline(last) == MOST_MISSES * INTERVAL
    detector.heard(2, 0, last + INTERVAL)  # the member restarted: its numbers begin again, nothing counts as lost
    assert detector.lost == 28


def test_a_fixed_timeout_is_kept_whatever_the_path() -> None:
    detector = Detector(INTERVAL, 1.0)
    last = beats(detector, [0, 5, 6], late={6: 0.3})
    assert detector.deadline(last) == 1.0 == first_deadline(INTERVAL, 1.0) == watchdog(INTERVAL, 1.0)
    assert watchdog(INTERVAL, None) == 5 * INTERVAL


def test_a_heartbeat_path_goes_down_once_silent_past_its_deadline_and_back_when_heard_even_across_timer_changes():
    async def run() -> None:
        changes: list[tuple] = []
        paths = Paths(lambda *change: changes.append(change))
        seq = 0

        async def send(count: int, interval: float, path_ids: tuple[int, ...]) -> None:
            nonlocal seq
            for _ in range(count):
                seq += 1
                for path in path_ids:
                    paths.heard("dev-2", path, 1, seq, time.monotonic(), interval, None)
                await asyncio.sleep(interval)

        await send(5, 0.05, (0, 1))
        await send(10, 0.02, (0, 1))  # the group's interval changed: no path is judged on the old timers
        assert changes == []
        await send(10, 0.02, (0,))  # path 1 silent
        assert [c[:3] for c in changes] == [("dev-2", 1, False)]
        await send(3, 0.02, (0, 1))
        assert [c[:3] for c in changes] == [("dev-2", 1, False), ("dev-2", 1, True)]
        report = paths.report("dev-2", ["a:1", "b:1", "c:1"], time.monotonic(), 0.02, None)
        assert [(p.address, p.up, p.received) for p in report] == [("a:1", True, 28), ("b:1", True, 18),
                                                                   ("c:1", False, 0)]
        paths.stop()

    asyncio.run(run())
