"""`tandem failover`, `tandem traffic-group`, the stats commands and the lab's demo without a device:
the command tree, argument checks, how a failover status is shown, the lab's demo pieces."""

import json
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
from cli_helpers import walk_commands

from tandem.cli.errors import CliError
from tandem.cli.failover import heartbeat_line, parse_names, show_status, status_rows
from tandem.cli.main import app
from tandem.cli.output import Output
from tandem.lab import demo as lab_demo
from tandem.lab.errors import LabError
from tandem.lab.state import LabBackend, LabDevice, LabState, load_lab, save_lab

STATUS = {
    "device": "dev-2", "device_group": "lab", "offline": False, "state": "online",
    "heartbeat": {"interval": 0.2, "timeout": 1.0, "received": 120, "forged": 3, "replayed": 0, "malformed": 1},
    "traffic_groups": [{
        "name": "traffic-group-1", "state": "standby", "active_device": "dev-1", "declined": True,
        "ha_order": ["dev-1", "dev-2", "dev-3"], "addresses": [], "auto_failback": False,
        "members": [
            {"name": "dev-1", "alive": True, "offline": False, "state": "active", "last_heard_s": 0.05},
            {"name": "dev-2", "alive": True, "offline": False, "state": "standby", "last_heard_s": None},
            {"name": "dev-3", "alive": False, "offline": False, "state": "standby", "last_heard_s": 4.5},
        ],
    }],
}


def test_the_tree_has_the_failover_commands():
    paths = {path for path, _ in walk_commands(typer.main.get_command(app))}
    expected = {("failover", verb) for verb in ("status", "events", "force-standby", "offline", "online")}
    expected |= {("traffic-group", verb) for verb in ("list", "show", "create", "update", "delete")}
    expected |= {("virtual", "stats"), ("pool", "stats")}
    assert expected <= paths


def test_status_rows_and_table():
    rows = status_rows(STATUS)
    assert rows == [{
        "name": "traffic-group-1", "state": "standby (forced)", "active_device": "dev-1",
        "ha_order": ["dev-1", "dev-2", "dev-3"], "auto_failback": False,
        "members": "dev-1: alive, active (0.05 s ago); dev-2: standby (this device); "
                   "dev-3: dead (last heard 4.5 s ago)",
    }]
    assert heartbeat_line(STATUS) == ("heartbeats every 0.2 s, dead after 1 s: received 120, forged 3, "
                                      "replayed 0, malformed 1")
    adaptive = {"interval": 0.2, "timeout": None, "detection": "adaptive", "received": 5, "peers": {
        "dev-1": {"deadline_s": 1.02, "lost": 7, "longest_lost_run": 2, "latest_ms": 40.0}}}
    assert heartbeat_line({"heartbeat": adaptive}) == ("heartbeats every 0.2 s, dead after 1.02 s (dev-1: 7 lost, 2 in"
                                                       " a row, 40 ms late at most): received 5")


def test_show_status_as_table_and_json(capsys):
    show_status(Output("table"), STATUS)
    out = capsys.readouterr().out
    assert "dev-2: online, device group lab" in out
    for text in ("traffic-group-1", "standby (forced)", "dev-1, dev-2, dev-3", "dead (last heard 4.5 s ago)",
                 "received 120"):
        assert text in out
    show_status(Output("json"), STATUS)
    assert json.loads(capsys.readouterr().out) == STATUS
    show_status(Output("table"), {**STATUS, "device_group": None, "traffic_groups": [], "offline": True})
    captured = capsys.readouterr()
    assert "offline (takes no traffic group), in no sync-failover device group" in captured.out
    assert "no traffic groups" in captured.err


def test_parse_names():
    assert parse_names("dev-1,dev-2") == ["dev-1", "dev-2"]
    assert parse_names(" dev-2 , dev-1 ") == ["dev-2", "dev-1"]
    assert parse_names("") == []
    with pytest.raises(CliError) as caught:
        parse_names("dev-1,,dev-2")
    assert caught.value.target == "--ha-order"


def test_failover_commands_need_a_device(runner):
    for args in (["failover", "status"], ["failover", "events"], ["failover", "force-standby", "tg"],
                 ["failover", "offline"], ["failover", "online"], ["traffic-group", "list"],
                 ["virtual", "stats", "www"], ["pool", "stats", "web"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 1, args
        assert result.stderr.startswith("error: no device to talk to"), (args, result.stderr)
    result = runner.invoke(app, ["failover", "status", "--device", "dev-2"])
    assert result.exit_code == 1
    assert "no lab is up" in result.stderr


def test_traffic_group_update_without_options_is_refused(before_connecting):
    result = before_connecting("traffic-group", "update", "tg")
    assert result.exit_code == 1
    assert "nothing to update" in result.stderr
    result = before_connecting("traffic-group", "update", "tg", "--address", "127.0.0.9", "--no-addresses")
    assert result.exit_code == 1
    assert "contradict" in result.stderr


def test_failover_device_option_cannot_go_with_url(before_connecting):
    result = before_connecting("failover", "status", "--device", "dev-2")
    assert result.exit_code == 1
    assert "(target: --device)" in result.stderr


# -- the lab's demo ------------------------------------------------------------------------------

def _random_base() -> str:
    return f"127.{random.randint(100, 254)}.{random.randint(0, 255)}.1"


def test_default_vip_and_host_port():
    assert lab_demo.default_vip("127.0.10.1") == "127.0.10.100:8080"
    assert lab_demo.default_vip("127.1.2.1") == "127.1.2.100:8080"
    with pytest.raises(LabError) as caught:
        lab_demo.default_vip("127.255.255.200")
    assert caught.value.target == "--vip"
    assert lab_demo.split_host_port("[::1]:8080", "--vip") == ("::1", 8080)
    assert lab_demo.host_port("::1", 8080) == "[::1]:8080"
    for bad in ("127.0.0.1", "127.0.0.1:0", "127.0.0.1:x", ":80", "127.0.0.1:70000"):
        with pytest.raises(LabError):
            lab_demo.split_host_port(bad, "--vip")


def test_check_vip_refuses_what_a_lab_cannot_serve():
    with pytest.raises(LabError, match="not a loopback address"):
        lab_demo.check_vip("10.0.0.1:80", ["127.0.10.1"], 8443)
    with pytest.raises(LabError, match="management or peer"):
        lab_demo.check_vip("127.0.10.1:8444", ["127.0.10.1"], 8443)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(LabError, match="already in use"):
            lab_demo.check_vip(f"127.0.0.1:{port}", [], 8443)
    assert lab_demo.check_vip("127.0.0.1:1", [], 8443) == ("127.0.0.1", 1)


@pytest.mark.parametrize(("extra", "message"), [
    (["--no-demo"], "--no-demo"),
    (["--no-cluster"], "--no-cluster"),
    (["--devices", "1"], "one device"),
])
def test_lab_up_refuses_a_vip_without_a_demo(runner, extra, message):
    result = runner.invoke(app, ["lab", "up", "--address-base", _random_base(), "--vip", "127.0.0.1:8080", *extra])
    assert result.exit_code == 1
    assert message in result.stderr and "(target: --vip)" in result.stderr


def test_lab_up_refuses_a_bad_vip_before_starting_anything(runner, lab_dir):
    result = runner.invoke(app, ["lab", "up", "--address-base", _random_base(), "--port", "31443",
                                 "--vip", "10.0.0.1:80"])
    assert result.exit_code == 1
    assert "not a loopback address" in result.stderr
    assert load_lab(lab_dir) is None
    assert not (lab_dir / "dev-1").exists()


def test_lab_state_with_backends_round_trips(lab_dir):
    state = LabState(dir=str(lab_dir), address_base="127.0.10.1", port=8443, traffic_group="traffic-group-1",
                     vip="127.0.10.100:8080")
    state.devices.append(LabDevice(name="dev-1", url="https://127.0.10.1:8443", listen="127.0.10.1:8443",
                                   fingerprint=None, password_file="p", pid=None, data_dir="d", log="l",
                                   killed=True))
    state.backends.append(LabBackend(name="backend-1", address="127.0.0.1", port=4321, pid=12, dir="b",
                                     log="b/backend.log", port_file="b/port"))
    save_lab(state)
    loaded = load_lab(lab_dir)
    assert loaded == state
    assert loaded.backend("backend-1").url == "http://127.0.0.1:4321/"
    assert loaded.backend("nope") is None
    # a lab.json written before the demo existed still loads
    data = json.loads((lab_dir / "lab.json").read_text())
    for key in ("backends", "traffic_group", "vip"):
        del data[key]
    del data["devices"][0]["killed"]
    (lab_dir / "lab.json").write_text(json.dumps(data))
    old = load_lab(lab_dir)
    assert (old.backends, old.traffic_group, old.vip, old.devices[0].killed) == ([], None, None, None)


def test_demo_hints_name_the_lab_dir_when_it_is_not_the_default(lab_dir, monkeypatch, tmp_path):
    state = LabState(dir=str(lab_dir), address_base="127.0.10.1", port=8443, traffic_group="traffic-group-1",
                     vip="127.0.10.100:8080")
    for i in (1, 2):
        state.devices.append(LabDevice(name=f"dev-{i}", url="u", listen="l", fingerprint=None, password_file="p",
                                       pid=None, data_dir="d", log="l"))
    monkeypatch.setenv("TANDEM_LAB_DIR", str(lab_dir))
    hints = lab_demo.demo_hints(state, lab_dir)
    assert hints[0].startswith("curl http://127.0.10.100:8080/ ")
    assert any("lab kill dev-1" in line for line in hints)
    assert any("failover status --device dev-2" in line for line in hints)
    assert not any("--lab-dir" in line for line in hints)
    monkeypatch.setenv("TANDEM_LAB_DIR", str(tmp_path / "elsewhere"))
    assert all(f"--lab-dir {lab_dir}" in line for line in lab_demo.demo_hints(state, lab_dir)
               if not line.startswith("curl"))


def test_lab_backend_answers_its_name(tmp_path):
    port_file = tmp_path / "port"
    proc = subprocess.Popen([sys.executable, "-m", "tandem.lab.backends", "--name", "backend-7",
                             "--listen", "127.0.0.1:0", "--port-file", str(port_file)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not port_file.exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        port = int(port_file.read_text())
        backend = LabBackend(name="backend-7", address="127.0.0.1", port=port, pid=proc.pid, dir=str(tmp_path),
                             log="", port_file=str(port_file))
        body = lab_demo.fetch("127.0.0.1", port)
        assert body is not None and body.splitlines()[0] == "backend-7" and body.splitlines()[1].startswith("host: ")
        assert lab_demo.backend_answers(backend)
        assert lab_demo.backend_alive(backend)
        assert not lab_demo.backend_alive(LabBackend(**{**backend.__dict__, "port_file": "/elsewhere"}))
        assert lab_demo.stop_backends([backend]) == {"backend-7": "stopped"}
        assert proc.wait(5) == 0
        assert lab_demo.fetch("127.0.0.1", port, timeout=0.5) is None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_lab_commands_name_backends_without_a_lab(runner, lab_dir):
    for args in (["lab", "kill", "backend-1"], ["lab", "start", "backend-1"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 1
        assert result.stderr.startswith(f"error: no lab is up in {lab_dir}")


def test_lab_kill_and_start_unknown_names(runner, lab_dir):
    state = LabState(dir=str(lab_dir), address_base="127.0.10.1", port=8443)
    state.devices.append(LabDevice(name="dev-1", url="https://127.0.10.1:8443", listen="127.0.10.1:8443",
                                   fingerprint=None, password_file="p", pid=None, data_dir=str(lab_dir / "dev-1"),
                                   log="l"))
    state.backends.append(LabBackend(name="backend-1", address="127.0.0.1", port=0, pid=None,
                                     dir=str(lab_dir / "backend-1"), log="l", port_file=str(lab_dir / "port")))
    save_lab(state)
    result = runner.invoke(app, ["lab", "kill", "backend-1"])
    assert result.exit_code == 1 and "backend-1 is not running" in result.stderr
    result = runner.invoke(app, ["lab", "kill", "dev-9"])
    assert result.exit_code == 1 and "no device 'dev-9'" in result.stderr
    assert Path(lab_dir / "lab.json").exists()


def test_trackers_are_parsed_from_the_command_line():
    from tandem.cli.failover import parse_tracker

    assert parse_tracker("gateway:198.18.0.1") == {"type": "gateway", "target": "198.18.0.1"}
    assert parse_tracker("gateway:198.18.0.1:30") == {"type": "gateway", "target": "198.18.0.1", "weight": 30}
    assert parse_tracker("script:/usr/local/bin/check:20") == {
        "type": "script", "target": "/usr/local/bin/check", "weight": 20}
    assert parse_tracker("interface:eth1:30") == {"type": "interface", "target": "eth1", "weight": 30}
    assert parse_tracker("pool:/Common/web") == {"type": "pool", "target": "/Common/web"}
    assert parse_tracker("pool:/Common/web:40:75") == {"type": "pool", "target": "/Common/web", "weight": 40,
                                                       "threshold": 75}
    for bad in ("ping:198.18.0.1", "gateway:198.18.0.1:30:75", "pool:/Common/web:40:75:1", "interface:eth1:0",
                "pool::30"):
        with pytest.raises(CliError, match="TYPE:TARGET"):
            parse_tracker(bad)


def test_followed_events_print_one_line_each(capsys):
    from tandem.cli.failover import EVENT_COLUMNS

    event = {"id": 7, "at": 1700000000.0, "traffic_group": "tg", "from_state": "standby", "to_state": "active",
             "reason": "no active device; first candidate in HA order"}
    Output("json").stream(event, EVENT_COLUMNS)
    Output("json").stream(event | {"id": 8}, EVENT_COLUMNS)
    assert [json.loads(line)["id"] for line in capsys.readouterr().out.splitlines()] == [7, 8]
    Output("table").stream(event, EVENT_COLUMNS)
    [line] = capsys.readouterr().out.splitlines()
    assert "tg  standby  active  no active device" in line
