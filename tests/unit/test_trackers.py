"""Trackers: a script tracker goes down after `fall` failed checks and up after `rise`; the score is 100 less the
weights of those down; tracker settings are checked."""

import asyncio
from pathlib import Path

import pytest
from pydantic import ValidationError

from tandem.failover.trackers import Tracking
from tandem.models.cluster import Tracker, TrafficGroup


def test_a_script_tracker_goes_down_and_up_and_the_score_follows(tmp_path: Path) -> None:
    flag = tmp_path / "healthy"
    check = tmp_path / "check"
    check.write_text(f"#!/bin/sh\ntest -e {flag}\n")
    check.chmod(0o755)
    flag.touch()
    tracker = Tracker(type="script", target=str(check), weight=30, interval=0.1, timeout=1, fall=2, rise=2)
    other = Tracker(type="script", target="/bin/true", weight=60, interval=0.1)

    async def scenario() -> list[tuple[int, tuple[str, ...]]]:
        changes = []
        tracking = Tracking(lambda: changes.append(tracking.score([tracker, other])))
        assert tracking.score([tracker, other]) == (10, (f"script {check}", "script /bin/true"))  # not checked yet
        tracking.configure([tracker, other])
        while len(changes) < 2:  # each checked once
            await asyncio.sleep(0.05)
        changes.clear()
        await asyncio.sleep(0.3)
        flag.unlink()
        while not changes:
            await asyncio.sleep(0.05)
        flag.touch()
        while len(changes) < 2:
            await asyncio.sleep(0.05)
        tracking.configure([])
        await tracking.stop()
        return changes

    assert asyncio.run(asyncio.wait_for(scenario(), 10)) == [(70, (f"script {check}",)), (100, ())]


def test_trackers_are_checked() -> None:
    with pytest.raises(ValidationError, match="IPv4 address"):
        Tracker(type="gateway", target="gw.example")
    with pytest.raises(ValidationError, match="absolute path"):
        Tracker(type="script", target="check.sh")
    with pytest.raises(ValidationError):
        Tracker(type="gateway", target="198.18.0.1", weight=0)
    group = TrafficGroup(name="tg", device_group="dg", trackers=[{"type": "gateway", "target": "198.18.0.1"}])
    assert group.trackers[0].describe() == "gateway 198.18.0.1" and group.score_hold == 0.5
