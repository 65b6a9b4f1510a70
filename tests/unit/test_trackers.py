"""Trackers: a script tracker goes down after `fall` failed checks and up after `rise`; a pool tracker by the share
of its members up; an interface tracker at once on netlink's word; the score is 100 less the weights of those
down; tracker settings are checked."""

import asyncio
import os
import subprocess
import time
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
        tracking = Tracking(lambda: changes.append(tracking.score([tracker, other])), lambda path: "unused")
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


def test_a_pool_tracker_is_up_while_its_share_of_members_up_reaches_the_threshold() -> None:
    tracker = Tracker(type="pool", target="/Common/web", threshold=75, interval=0.1, fall=1, rise=1)
    availability: dict[str, tuple[int, int] | str | None] = {"/Common/web": None}

    async def scenario() -> list[tuple[bool | None, str]]:
        seen: list[tuple[bool | None, str]] = []
        tracking = Tracking(lambda: seen.append((state.up, state.why)), lambda path: availability[path])
        tracking.configure([tracker])
        state = next(iter(tracking.states.values()))
        await asyncio.sleep(0.35)  # nothing known yet (no answer, or no member probed): nothing judged
        assert (seen, state.up) == ([], None)
        availability["/Common/web"] = (3, 4)
        for value in [(2, 4), (4, 4), (0, 0), (3, 4), "no such pool"]:
            count = len(seen)
            while len(seen) == count:
                await asyncio.sleep(0.02)
            availability["/Common/web"] = value
        while len(seen) < 6:
            await asyncio.sleep(0.02)
        await tracking.stop()
        return seen

    assert asyncio.run(asyncio.wait_for(scenario(), 10)) == [
        (True, ""), (False, "2 of 4 members up (75% needed)"), (True, ""), (False, "0 of 0 members up (75% needed)"),
        (True, ""), (False, "no such pool")]


@pytest.mark.skipif(os.geteuid() != 0, reason="a veth pair of its own takes root")
def test_an_interface_tracker_follows_carrier_at_once_from_netlink_events() -> None:
    name, peer = f"tdmt{os.getpid() % 10000}a", f"tdmt{os.getpid() % 10000}b"
    tracker = Tracker(type="interface", target=name, weight=40)
    missing = Tracker(type="interface", target="tdm-none0", weight=20)

    def ip(*args: str) -> None:
        subprocess.run(["ip", "link", *args], check=True)

    async def wait_for(state, up: bool) -> float:
        started = time.monotonic()
        while state.up is not up:
            await asyncio.sleep(0.005)
        return time.monotonic() - started

    async def scenario() -> tuple[list[str], float]:
        tracking = Tracking(lambda: None, lambda path: "unused")
        tracking.configure([tracker, missing])
        state = tracking.states[next(k for k in tracking.states if k[1] == name)]
        await wait_for(state, False)  # not there yet
        whys = [state.why]
        ip("add", name, "type", "veth", "peer", "name", peer)
        ip("set", name, "up")
        await asyncio.sleep(0.2)
        whys.append(state.why)  # up, but its peer is down: no carrier
        ip("set", peer, "up")
        await wait_for(state, True)
        ip("set", peer, "down")
        took = await wait_for(state, False)
        whys.append(state.why)
        ip("set", name, "down")
        await asyncio.sleep(0.2)
        whys.append(state.why)
        score = tracking.score([tracker, missing])
        await tracking.stop()
        assert score == (40, (f"interface {name}", "interface tdm-none0"))
        return whys, took

    try:
        whys, took = asyncio.run(asyncio.wait_for(scenario(), 10))
    finally:
        subprocess.run(["ip", "link", "del", name], capture_output=True)
    assert whys == ["no such interface", "no carrier", "no carrier", "administratively down"]
    assert took < 0.5  # an event, not a poll


def test_trackers_are_checked() -> None:
    with pytest.raises(ValidationError, match="IPv4 address"):
        Tracker(type="gateway", target="gw.example")
    with pytest.raises(ValidationError, match="absolute path"):
        Tracker(type="script", target="check.sh")
    with pytest.raises(ValidationError):
        Tracker(type="gateway", target="198.18.0.1", weight=0)
    with pytest.raises(ValidationError, match="interface name"):
        Tracker(type="interface", target="eth0:1")
    with pytest.raises(ValidationError, match="/partition/name"):
        Tracker(type="pool", target="web")
    with pytest.raises(ValidationError, match="only a pool tracker"):
        Tracker(type="gateway", target="198.18.0.1", threshold=50)
    assert Tracker(type="pool", target="/Common/web").threshold == 50
    assert "threshold" not in Tracker(type="interface", target="eth1").model_dump()  # the release before reads it
    group = TrafficGroup(name="tg", device_group="dg", trackers=[{"type": "gateway", "target": "198.18.0.1"}])
    assert group.trackers[0].describe() == "gateway 198.18.0.1" and group.score_hold == 0.5
