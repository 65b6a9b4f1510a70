"""Notify scripts: run at each transition with it in their environment, in order, killed past their timeout, never
holding the event loop; bad paths refused at start."""

import asyncio
import time
from pathlib import Path

import pytest

from tandem.failover.notify import Notifier, Transition, check_scripts


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def transition(to_state: str, reason: str = "no active device") -> Transition:
    return Transition("dev-1", "traffic-group-1", "standby", to_state, reason, 1700000000.5)


def test_each_transition_runs_the_scripts_in_order_with_it_in_their_environment(tmp_path: Path) -> None:
    out = tmp_path / "out"
    record = script(tmp_path / "record", f'echo "$1 $2 $TANDEM_DEVICE $TANDEM_FROM_STATE $TANDEM_TO_STATE '
                                          f'$TANDEM_REASON $TANDEM_AT" >> {out}\n')

    async def scenario() -> float:
        notifier = Notifier([record])
        started = time.perf_counter()
        notifier.tell(transition("active"))
        notifier.tell(transition("offline", "device is offline; $(touch pwned)"))
        told = time.perf_counter() - started
        while len(out.read_text().splitlines() if out.exists() else []) < 2:
            await asyncio.sleep(0.01)
        await notifier.stop()
        return told

    assert asyncio.run(scenario()) < 0.05  # telling waits for nothing
    assert out.read_text().splitlines() == [
        "traffic-group-1 active dev-1 standby active no active device 1700000000.500000",
        "traffic-group-1 offline dev-1 standby offline device is offline; $(touch pwned) 1700000000.500000"]
    assert not (tmp_path / "pwned").exists()


def active_then_standby(notify: Path, out: Path, timeout: float, lines: int) -> float:
    """Tell two transitions (to active, then to standby); seconds until `out` holds `lines` lines."""
    async def scenario() -> None:
        notifier = Notifier([notify], timeout=timeout)
        notifier.tell(transition("active"))
        notifier.tell(transition("standby"))
        while len(out.read_text().splitlines() if out.exists() else []) < lines:
            await asyncio.sleep(0.01)
        await notifier.stop()

    started = time.perf_counter()
    asyncio.run(scenario())
    return time.perf_counter() - started


def test_a_script_past_its_timeout_is_killed_and_the_next_transition_runs(tmp_path: Path, caplog) -> None:
    out = tmp_path / "out"
    slow = script(tmp_path / "slow", f'[ "$2" = active ] && sleep 30\necho "$2" >> {out}\n')
    assert active_then_standby(slow, out, timeout=0.3, lines=1) < 5
    assert out.read_text() == "standby\n"
    assert "killed after" in caplog.text


def test_scripts_that_cannot_run_are_refused_at_start(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_text("echo\n")
    with pytest.raises(ValueError, match="not an executable file"):
        check_scripts([plain])
    with pytest.raises(ValueError, match="not an executable file"):
        check_scripts([tmp_path / "missing"])
    assert check_scripts([script(tmp_path / "ok", "true\n")]) == [tmp_path / "ok"]


def test_a_script_that_leaves_a_process_behind_does_not_hold_the_next_transition(tmp_path: Path) -> None:
    out = tmp_path / "out"
    forks = script(tmp_path / "forks", f'sleep 30 &\necho "$2" >> {out}\n')
    assert active_then_standby(forks, out, timeout=20, lines=2) < 5
    assert out.read_text() == "active\nstandby\n"
