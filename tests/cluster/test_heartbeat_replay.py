"""Captured heartbeats cannot be replayed: one stamped outside the clock window is dropped, and one heard before
the failover process restarts is still a replay after it. The heartbeats are crafted here as a member would send
them (`seal` under the trust domain's key, read from dev-1's store) in the name of dev-2, which is dead."""

import contextlib
import json
import os
import signal
import socket
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from cluster_helpers import Cluster, Node, check

from tandem.failover.heartbeat import GroupState, Heartbeat, heartbeat_key, seal
from tandem.failover.replay import STATE_FILE
from waiting import wait_until

TG = "tg-replay"
TIMEOUT = 1.0


@dataclass
class Setup:
    node: Node
    """dev-1, active for TG since dev-2 (first in its HA order) was killed."""
    key: bytes
    dev_2: str
    """dev-2's device id."""

    def send(self, datagram: bytes) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.sendto(datagram, ("127.0.0.1", self.node.peer_port))

    def heartbeat(self, boot: int, seq: int, at: float, state: str) -> bytes:
        """A heartbeat of dev-2, signed as dev-2 would sign it."""
        return seal(self.key, Heartbeat(device=self.dev_2, boot=boot, seq=seq, time=at, offline=False,
                                        groups={TG: GroupState(state=state)}))


@pytest.fixture(scope="module")
def setup(module_cluster_factory) -> Iterator[Setup]:
    cluster: Cluster = module_cluster_factory()
    cluster.start("dev-1", "dev-2")
    cluster.form(heartbeat_interval=0.2, heartbeat_timeout=TIMEOUT)
    one = cluster["dev-1"]
    check(one.api.post("/api/traffic-groups", json={"name": TG, "device_group": "dg", "ha_order": ["dev-2", "dev-1"]}),
          201)
    wait_until(lambda: group(one)["active_device"] == "dev-2", 15, "dev-2 active", detail=lambda: group(one))
    cluster["dev-2"].kill()
    wait_until(lambda: group(one)["state"] == "active", 10, "dev-1 to take over", detail=lambda: group(one))
    devices = check(one.api.get("/api/trust/devices"), 200).json()["records"]
    dev_2 = next(d["id"] for d in devices if d["name"] == "dev-2")
    with contextlib.closing(sqlite3.connect(f"{(one.device.data_dir / 'tandem.db').as_uri()}?mode=ro", uri=True)) as db:
        (secret,) = db.execute("SELECT value FROM meta WHERE key = 'domain_secret'").fetchone()
    yield Setup(one, heartbeat_key(secret), dev_2)


def status(node: Node) -> dict:
    return check(node.api.get("/api/failover/status"), 200).json()


def group(node: Node) -> dict:
    return next(g for g in status(node)["traffic_groups"] if g["name"] == TG)


def dev_2_alive(node: Node) -> bool:
    return next(m for m in group(node)["members"] if m["name"] == "dev-2")["alive"]


def test_a_heartbeat_stamped_an_hour_ago_is_dropped_and_counted(setup: Setup) -> None:
    node = setup.node
    before = status(node)["heartbeat"]
    boot = time.time_ns()
    for seq in range(1, 11):  # "dev-2 is active": believed, it would make dev-1 step down
        setup.send(setup.heartbeat(boot, seq, time.time() - 3600, "active"))
        time.sleep(0.1)
        shown = group(node)
        assert shown["state"] == "active" and not dev_2_alive(node), shown
    counters = wait_until(lambda: (c := status(node)["heartbeat"])["stale"] >= before["stale"] + 10 and c, 5,
                          "the stale heartbeats counted", detail=lambda: status(node)["heartbeat"])
    assert counters["received"] == before["received"]
    log = node.device.log_path.read_text(errors="replace")
    assert log.count("heartbeats of dev-2: stamped more than 30 s behind this device's clock") == 1, log[-3000:]


def test_a_heartbeat_heard_before_a_restart_is_still_a_replay_after_it(setup: Setup) -> None:
    node = setup.node
    boot = time.time_ns()
    captured = setup.heartbeat(boot, 1, time.time(), "standby")
    setup.send(captured)  # heard once: dev-2 seems alive for a timeout
    wait_until(lambda: dev_2_alive(node), 5, "the heartbeat heard", detail=lambda: group(node))
    state_file = node.device.data_dir / STATE_FILE
    wait_until(lambda: json.loads(state_file.read_text())["last"][setup.dev_2] == [boot, 1], 5,
               "the heartbeat kept in " + STATE_FILE, detail=state_file.read_text)
    assert state_file.stat().st_mode & 0o777 == 0o600

    def starts() -> int:
        events = check(node.api.get("/api/failover/events", params={"traffic_group": TG, "limit": 10_000}),
                       200).json()["records"]
        return sum(e["reason"] == "initial state" for e in events)

    started = starts()
    before = status(node)["process"]
    os.kill(before["pid"], signal.SIGKILL)  # the failover process dies (no chance to save) and is started again
    wait_until(lambda: starts() > started and status(node)["process"]["pid"] != before["pid"], 15,
               "the failover process started again and configured", detail=lambda: status(node))
    wait_until(lambda: not dev_2_alive(node), 5, "dev-2 silent", detail=lambda: group(node))

    setup.send(captured)
    counters = wait_until(lambda: (c := status(node)["heartbeat"])["replayed"] >= 1 and c, 5, "the replay dropped",
                          detail=lambda: status(node)["heartbeat"])
    assert counters["received"] == 0 and not dev_2_alive(node), counters
