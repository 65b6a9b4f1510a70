"""End to end: `tandem lab up --devices 2` makes a virtual server a person can curl and watch fail over;
`tandem failover ...`, `tandem traffic-group ...` and `tandem virtual stats` drive it. Real `tandem serve`
processes, real backends, real heartbeats, driven by `python -m tandem` in subprocesses.

The lab uses a random 127.x.y.0/24 block (devices on .1 and .2, the virtual server on .100:8080, the
default) and a random management port. The tests of this module run in order against one lab.
"""

import http.client
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_helpers import LabRun, free, gone

from waiting import wait_until

TG = "traffic-group-1"
TAKEOVER = 3.0
"""A killed active device's virtual server answers from another device within this many seconds."""


@dataclass
class Lab(LabRun):
    @property
    def vip(self) -> tuple[str, int]:
        """The demo's virtual server: .100:8080 of the lab's block (the default)."""
        return self.base.rsplit(".", 1)[0] + ".100", 8080

    def group(self, *device: str) -> dict:
        """The lab's traffic group as a device (`--device dev-2`, or the first) sees it."""
        status = self.json("failover", "status", *(("--device", *device) if device else ()))
        return next(g for g in status["traffic_groups"] if g["name"] == TG)


def get(address: str, port: int, timeout: float = 0.5) -> str | None:
    """The first line of `GET /` through the virtual server (None: no answer)."""
    connection = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        body = response.read().decode()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()
    return body.split("\n", 1)[0] if response.status == 200 else None


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with Lab.started(tmp_path_factory.mktemp("tandem-failover-lab"), also=((100, 8080),)) as lab:
        yield lab


def test_lab_up_sets_up_a_virtual_server_and_says_how_to_watch_it_fail_over(lab: Lab) -> None:
    state = lab.state()
    vip = f"{lab.vip[0]}:{lab.vip[1]}"
    assert (state["vip"], state["traffic_group"]) == (vip, TG)
    assert [b["name"] for b in state["backends"]] == ["backend-1", "backend-2"]
    for backend in state["backends"]:
        assert backend["address"] == "127.0.0.1" and backend["port"] > 0 and not gone(backend["pid"])
        assert Path(backend["log"]).is_file()
    out = lab.up.stdout
    assert f"curl http://{vip}/" in out
    assert "lab kill dev-1" in out
    assert "failover status --device dev-2" in out
    assert out.index("lab kill dev-1") < out.index("failover status --device dev-2")
    assert "creating traffic group traffic-group-1" in lab.up.stderr
    first = state["devices"][0]
    assert f"web console: {first['url']}/ui/" in out and first["password_file"] in out


def test_the_virtual_server_answers_from_both_backends(lab: Lab) -> None:
    answers = [get(*lab.vip) for _ in range(8)]
    assert set(answers) == {"backend-1", "backend-2"}, answers


def test_failover_status_shows_dev_1_active(lab: Lab) -> None:
    status = lab.json("failover", "status")
    assert (status["device"], status["device_group"], status["offline"]) == ("dev-1", "lab", False)
    assert status["heartbeat"]["received"] > 0 and status["heartbeat"]["forged"] == 0
    group = next(g for g in status["traffic_groups"] if g["name"] == TG)
    assert (group["state"], group["active_device"], group["ha_order"]) == ("active", "dev-1", ["dev-1", "dev-2"])
    seen_from_two = lab.group("dev-2")
    assert (seen_from_two["state"], seen_from_two["active_device"]) == ("standby", "dev-1")

    table = lab.run("failover", "status", "--device", "dev-2")
    assert table.returncode == 0, table.stderr
    assert "dev-2: online, device group lab" in table.stdout
    assert TG in table.stdout and "standby" in table.stdout and "heartbeats every 0.2 s" in table.stdout

    status = {row["name"]: row for row in lab.json("lab", "status")}
    assert (status["dev-1"]["failover"], status["dev-2"]["failover"]) == ("active", "standby")
    assert (status["backend-1"]["kind"], status["backend-1"]["health"]) == ("backend", "ok")


def test_traffic_group_commands_and_stats(lab: Lab) -> None:
    groups = lab.json("traffic-group", "list")
    assert [(g["name"], g["device_group"], g["ha_order"]) for g in groups] == [(TG, "lab", ["dev-1", "dev-2"])]
    extra = lab.base.rsplit(".", 1)[0] + ".200"
    created = lab.json("traffic-group", "create", "tg-extra", "--ha-order", "dev-2,dev-1", "--address", extra)
    assert (created["device_group"], created["ha_order"], created["addresses"], created["auto_failback"]) == (
        "lab", ["dev-2", "dev-1"], [extra], False)
    assert lab.json("traffic-group", "update", "tg-extra", "--auto-failback")["auto_failback"] is True
    assert lab.json("--device", "dev-2", "traffic-group", "show", "tg-extra")["addresses"] == [extra]
    shown = lab.run("traffic-group", "show", "tg-extra")
    assert shown.returncode == 0 and "on this device:" in shown.stdout
    assert lab.json("traffic-group", "delete", "tg-extra") == {"deleted": "traffic group", "name": "tg-extra"}
    missing = lab.run("traffic-group", "show", "tg-extra")
    assert missing.returncode == 1 and missing.stderr.startswith("error: ")

    stats = lab.json("virtual", "stats", "www")
    assert (stats["address"], stats["port"], stats["listening"]) == (*lab.vip, True)
    assert stats["connections_total"] >= 8
    members = lab.json("pool", "stats", "web")
    assert len(members) == 2 and {m["health"] for m in members.values()} == {"up"}
    standby = lab.run("virtual", "stats", "www", "--device", "dev-2")
    assert standby.returncode == 1
    assert "not served by this device" in standby.stderr and "--device dev-1" in standby.stderr


def test_force_standby_and_events(lab: Lab) -> None:
    handed = lab.json("failover", "force-standby", TG)
    group = next(g for g in handed["traffic_groups"] if g["name"] == TG)
    assert (group["state"], group["declined"], group["active_device"]) == ("standby", True, "dev-2")
    # dev-2 is active (it said so at once); its data plane serves within moments
    wait_until(lambda: get(*lab.vip) in ("backend-1", "backend-2"), 3, "the virtual server answering from dev-2")
    refused = lab.run("failover", "force-standby", TG)  # dev-1 is not active any more
    assert refused.returncode == 1 and "not active" in refused.stderr
    # hand it back: dev-1 online (forced standby cleared), then dev-2 steps down
    assert lab.json("failover", "online")["offline"] is False
    back = lab.run("failover", "force-standby", TG, "--device", "dev-2")
    assert back.returncode == 0, back.stderr
    assert "dev-2 handed traffic-group-1 to dev-1" in back.stdout
    lab.json("failover", "online", "--device", "dev-2")
    assert lab.group()["active_device"] == "dev-1"

    events = lab.json("failover", "events", "--traffic-group", TG)
    assert {e["traffic_group"] for e in events} == {TG}
    assert "forced to standby" in [e["reason"] for e in events]
    assert len(lab.json("failover", "events", "--limit", "1")) == 1
    table = lab.run("failover", "events")
    assert table.returncode == 0 and "forced to standby" in table.stdout


def test_killing_the_active_device_moves_the_virtual_server(lab: Lab) -> None:
    pid = next(d["pid"] for d in lab.state()["devices"] if d["name"] == "dev-1")
    killed = lab.run("lab", "kill", "dev-1")
    assert killed.returncode == 0, killed.stderr
    killed_at = time.monotonic()
    assert gone(pid)
    answer = None
    while answer is None:
        assert time.monotonic() - killed_at < TAKEOVER, "the virtual server did not answer after dev-1 died"
        answer = get(*lab.vip, timeout=0.3)
        if answer is None:
            time.sleep(0.05)
    assert answer in ("backend-1", "backend-2")
    group = lab.group("dev-2")
    assert (group["state"], group["active_device"]) == ("active", "dev-2")
    dead = next(m for m in group["members"] if m["name"] == "dev-1")
    assert dead["alive"] is False

    status = {row["name"]: row for row in lab.json("lab", "status")}
    assert (status["dev-1"]["alive"], status["dev-1"]["state"], status["dev-1"]["pid"]) == (False, "killed", None)
    assert (status["dev-2"]["alive"], status["dev-2"]["failover"]) == (True, "active")
    table = lab.run("lab", "status")
    assert table.returncode == 0 and "killed" in table.stdout and "active on dev-2" in table.stdout


def test_a_device_started_again_comes_back_as_standby(lab: Lab) -> None:
    started = lab.json("lab", "start", "dev-1")
    assert started["name"] == "dev-1" and not gone(started["pid"])
    assert (started["failover"]["state"], started["failover"]["active_device"]) == ("standby", "dev-2")
    time.sleep(1.5)  # longer than the heartbeat timeout: dev-1 stays standby (no auto-failback)
    group = lab.group()
    assert (group["state"], group["active_device"]) == ("standby", "dev-2")
    assert get(*lab.vip) in ("backend-1", "backend-2")


def test_lab_down_stops_devices_and_backends(lab: Lab) -> None:
    state = lab.state()
    pids = [p["pid"] for p in state["devices"] + state["backends"]]
    result = lab.json("lab", "down")
    assert result["devices"] == {"dev-1": "stopped", "dev-2": "stopped"}
    assert result["backends"] == {"backend-1": "stopped", "backend-2": "stopped"}
    wait_until(lambda: all(gone(pid) for pid in pids), 5, "the lab's processes to exit")
    assert get(*lab.vip) is None
    assert free(*lab.vip)
    assert not (lab.dir / "lab.json").exists()
