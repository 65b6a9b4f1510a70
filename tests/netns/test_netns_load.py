"""The core under load, on a real network (see `netlab.py`): heartbeats and traffic never wait for the
management process. Two devices at the default timers (0.2 s / 1.0 s), a active, b standby, and a
client polling the floating address.

- The active applies maximum-size batches (10,000 operations) back to back for 30 s: nobody is judged
  dead, no traffic group moves, and the virtual server answers from the active throughout.
- The active's management event loop is held on purpose (a test hook): the same.
- The active's data plane process is stopped (SIGSTOP): the active steps down, saying why, and the
  standby takes the traffic; continued, the data plane answers again and its device is a standby.

Needs root and iproute2 (skipped otherwise; CI runs as root).
"""

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from netlab import TRAFFIC_GROUP, Lab, available, check, formed

from waiting import wait_until

pytestmark = pytest.mark.skipif(available() is not None, reason=available() or "")

LOAD_SECONDS = 30.0
BATCH = 10_000
POLL = 0.1
"""Seconds between the client's requests to the floating address."""


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    with formed(Lab(tmp_path, env={"TANDEM_TEST_HOOKS": "1"})) as lab:
        yield lab


def transitions(lab: Lab, name: str) -> list[dict]:
    return [e for e in lab.hosts[name].events() if e["traffic_group"] == TRAFFIC_GROUP]


class Poller:
    """The client asking the floating address every `POLL` seconds, in the background, noting who answered."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.answers: list[str | None] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.answers.append(self.lab.ask(0.5))
            time.sleep(POLL)

    def __enter__(self) -> "Poller":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def batches() -> Iterator[list[dict]]:
    """Monitors created, pools using them created, the pools deleted, the monitors deleted: again and again."""
    monitors = [{"action": "create", "resource": "monitors", "name": f"m{i}", "body": {"type": "tcp"}}
                for i in range(BATCH)]
    pools = [{"action": "create", "resource": "pools", "name": f"p{i}", "body": {"monitor": f"m{i}"}}
             for i in range(BATCH)]
    while True:
        yield monitors
        yield pools
        yield [{"action": "delete", "resource": "pools", "name": op["name"]} for op in pools]
        yield [{"action": "delete", "resource": "monitors", "name": op["name"]} for op in monitors]


def test_back_to_back_maximum_batches_move_nothing(lab: Lab) -> None:
    before = {name: len(transitions(lab, name)) for name in ("a", "b")}
    applied = 0
    with Poller(lab) as poller:
        deadline = time.monotonic() + LOAD_SECONDS
        for operations in batches():
            if time.monotonic() > deadline:
                break
            response = lab.a.api.post("/api/batch", json={"operations": operations}, timeout=60)
            check(response, 200)
            applied += 1
    assert applied >= 4, f"only {applied} batches in {LOAD_SECONDS} s"
    after = {name: transitions(lab, name)[before[name]:] for name in ("a", "b")}
    assert after == {"a": [], "b": []}, f"transitions under load: {after}"
    assert lab.a.state() == "active" and lab.b.state() == "standby"
    missed = [i for i, answer in enumerate(poller.answers) if answer != "a"]
    assert not missed, f"{len(missed)} of {len(poller.answers)} requests not answered by a: {poller.answers}"


def test_a_held_management_loop_holds_neither_heartbeats_nor_traffic(lab: Lab) -> None:
    before = len(transitions(lab, "b"))
    with Poller(lab) as poller:
        started = time.monotonic()
        check(lab.a.api.post("/api/testing/block-management", json={"seconds": 3}, timeout=30), 204)
        held = time.monotonic() - started
    assert held >= 3, "the hook did not hold the management loop"
    assert transitions(lab, "b")[before:] == [], "b judged a dead while its management loop was held"
    assert poller.answers and all(answer == "a" for answer in poller.answers), poller.answers


def test_a_stopped_data_plane_makes_the_active_step_down(lab: Lab) -> None:
    pid = check(lab.a.api.get("/api/dataplane"), 200).json()["process"]["pid"]
    stopped_at = time.monotonic()
    os.kill(pid, signal.SIGSTOP)
    try:
        wait_until(lambda: lab.b.state() == "active" and lab.ask(0.2) == "b", 10,
                   "b active and answering after a's data plane stopped", lab.describe)
        took = time.monotonic() - stopped_at
        stepped = [e for e in transitions(lab, "a") if e["to_state"] == "offline"]
        assert stepped and "data plane not answering" in stepped[-1]["reason"], transitions(lab, "a")
        assert lab.a.failover()["dataplane"]["answering"] is False
        assert took < 1.0 + 2.0, f"the standby served after {took:.2f} s"
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_until(lambda: lab.a.failover()["dataplane"]["answering"] and lab.a.state() == "standby", 10,
               "a's data plane answering again, a standby", lab.describe)
    assert lab.ask(0.5) == "b"
