"""The command tree without a device: help, arguments, error printing, lab helpers."""

import json
import os
import socket
from pathlib import Path

import pytest
import typer
from cli_helpers import run_tandem, subprocess_env, walk_commands

from devices import free_port
from tandem.cli.errors import CliError
from tandem.cli.main import app
from tandem.cli.objects import parse_filters, parse_member
from tandem.lab import processes as lab_processes
from tandem.lab.errors import LabError
from tandem.lab.state import LabDevice
from tandem.models.fields import parse_host_port as parse_listen
from tandem.trust.identity import certificate_fingerprint

ALL_COMMANDS = [path for path, _ in walk_commands(typer.main.get_command(app))]


def test_the_tree_has_the_promised_commands():
    expected = {
        ("serve",), ("lab", "up"), ("lab", "down"), ("lab", "status"), ("lab", "kill"), ("lab", "start"),
        ("device", "show"), ("job", "list"), ("job", "show"),
        ("pool", "member", "list"), ("pool", "member", "add"), ("pool", "member", "remove"),
        ("pool", "member", "enable"), ("pool", "member", "disable"),
    }
    for group in ("partition", "monitor", "pool", "virtual", "user"):
        expected |= {(group, verb) for verb in ("list", "show", "create", "update", "delete")}
    assert expected <= set(ALL_COMMANDS)


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=lambda p: " ".join(p) or "tandem")
def test_help_on_every_command(runner, path):
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
    assert "Traceback" not in result.output


def test_no_command_takes_a_password_as_argument():
    for path, command in walk_commands(typer.main.get_command(app)):
        for param in getattr(command, "params", []):
            for opt in (*param.opts, *param.secondary_opts):
                assert opt not in ("--password", "--pass", "--passwd", "--secret"), (path, opt)
            assert param.name != "password", path


@pytest.mark.parametrize("args", [
    ["--password", "secret", "pool", "list"],
    ["user", "create", "bob", "--role", "admin", "--password", "secret123"],
    ["user", "update", "bob", "--password", "secret123"],
])
def test_password_on_the_command_line_is_refused(runner, args):
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "No such option" in result.output


def test_no_device_is_a_clear_error(runner):
    result = runner.invoke(app, ["pool", "list"])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: no device to talk to")
    assert "tandem lab up" in result.stderr
    assert "Traceback" not in result.output


def test_no_device_is_a_json_error_in_json_mode(runner):
    result = runner.invoke(app, ["--output", "json", "pool", "list"])
    assert result.exit_code == 1
    assert result.stdout == ""
    error = json.loads(result.stderr)["error"]
    assert error["target"] == "--url"
    assert "no device" in error["message"]


def test_unreachable_device_is_an_sdk_error_not_a_traceback(runner):
    url = f"https://127.0.0.1:{free_port()}"
    result = runner.invoke(app, ["--url", url, "--insecure", "partition", "list"],
                           env={"TANDEM_PASSWORD": "whatever1"})
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ")
    assert "127.0.0.1" in result.stderr
    assert "Traceback" not in result.output


def test_unreachable_device_with_pin_is_an_error(runner):
    url = f"https://127.0.0.1:{free_port()}"
    result = runner.invoke(app, ["--url", url, "--fingerprint", ":".join(["ab"] * 32), "device", "show"],
                           env={"TANDEM_PASSWORD": "whatever1"})
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ")


def test_bad_filter_is_refused_before_connecting(before_connecting):
    result = before_connecting("pool", "list", "--filter", "name")
    assert result.exit_code == 1
    assert result.stderr == "error: 'name' is not FIELD=VALUE (target: --filter)\n"


def test_bad_fingerprint_is_refused(before_connecting):
    result = before_connecting("--fingerprint", "nope", "device", "show")
    assert result.exit_code == 1
    assert "(target: --fingerprint)" in result.stderr


def test_update_without_options_is_refused(before_connecting):
    result = before_connecting("pool", "update", "web")
    assert result.exit_code == 1
    assert "nothing to update" in result.stderr


def test_lab_commands_without_lab(runner, lab_dir):
    for args in (["lab", "status"], ["lab", "down"], ["lab", "kill", "dev-1"], ["lab", "start", "dev-1"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 1, args
        assert result.stderr.startswith(f"error: no lab is up in {lab_dir}"), result.stderr


def test_lab_up_refuses_addresses_outside_loopback(runner):
    result = runner.invoke(app, ["lab", "up", "--address-base", "10.0.0.1"])
    assert result.exit_code == 1
    assert "(target: --address-base)" in result.stderr
    result = runner.invoke(app, ["lab", "up", "--devices", "3", "--address-base", "127.255.255.254"])
    assert result.exit_code == 1
    assert "loopback" in result.stderr


def test_lab_up_refuses_a_busy_port(runner):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = runner.invoke(app, ["lab", "up", "--devices", "1", "--address-base", "127.0.0.1",
                                     "--port", str(port)])
    assert result.exit_code == 1
    assert f"port {port} is already in use" in result.stderr


def test_serve_checks_listen(runner, tmp_path):
    result = runner.invoke(app, ["serve", "--name", "x", "--data-dir", str(tmp_path), "--listen", "nowhere"])
    assert result.exit_code == 2
    assert "ADDR:PORT" in result.output


def test_python_dash_m_tandem_help():
    result = run_tandem("--help", env=subprocess_env())
    assert result.returncode == 0
    assert "Usage" in result.stdout and "lab" in result.stdout


def test_python_dash_m_tandem_error_exit_status(tmp_path):
    result = run_tandem("--output", "json", "virtual", "list", env=subprocess_env(TANDEM_LAB_DIR=str(tmp_path)))
    assert result.returncode == 1
    assert result.stdout == ""
    assert json.loads(result.stderr)["error"]["target"] == "--url"
    assert "Traceback" not in result.stderr


# -- parsing helpers ------------------------------------------------------------------------------

def test_parse_filters():
    assert parse_filters(["name=web*", "port=80", "description=a=b"]) == {
        "name": "web*", "port": "80", "description": "a=b"}
    with pytest.raises(CliError):
        parse_filters(["=x"])
    with pytest.raises(CliError):
        parse_filters(["a=1", "a=2"])


@pytest.mark.parametrize(("text", "parsed"), [
    ("10.0.0.1:80", ("10.0.0.1", 80)),
    ("[2001:db8::1]:8080", ("2001:db8::1", 8080)),
    ("999.1.1.1:80", ("999.1.1.1", 80)),  # the device judges addresses
])
def test_parse_member(text, parsed):
    assert parse_member(text) == parsed


@pytest.mark.parametrize("text", ["10.0.0.1", "10.0.0.1:http", ":80"])
def test_parse_member_refuses(text):
    with pytest.raises(CliError):
        parse_member(text)


def test_parse_listen():
    assert parse_listen("127.0.10.1:8443") == ("127.0.10.1", 8443)
    assert parse_listen("[::1]:8443") == ("::1", 8443)
    for bad in ("127.0.0.1", "host:80", "127.0.0.1:0", "127.0.0.1:70000"):
        with pytest.raises(ValueError):
            parse_listen(bad)


# -- lab helpers ----------------------------------------------------------------------------------

def test_device_addresses():
    assert lab_processes.device_addresses("127.0.10.1", 3) == ["127.0.10.1", "127.0.10.2", "127.0.10.3"]
    assert lab_processes.device_addresses("127.0.10.255", 2) == ["127.0.10.255", "127.0.11.0"]
    with pytest.raises(LabError):
        lab_processes.device_addresses("::1", 1)
    with pytest.raises(LabError):
        lab_processes.device_addresses("not-an-address", 1)


def test_process_alive_only_for_tandem_serve():
    assert lab_processes.process_alive(None) is False
    assert lab_processes.process_alive(0) is False
    # this test process is alive but is not a `tandem serve` of that data dir: never signalled
    assert lab_processes.process_alive(os.getpid(), "/nonexistent") is False


def test_stop_devices_of_dead_processes(tmp_path):
    device = LabDevice(name="dev-1", url="https://127.0.0.1:1", listen="127.0.0.1:1", fingerprint=None,
                       password_file="", pid=None, data_dir=str(tmp_path), log="")
    assert lab_processes.stop_devices([device], grace=0.1) == {"dev-1": "not running"}


def test_log_tail(tmp_path):
    log = tmp_path / "daemon.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    tail = lab_processes.log_tail(log, lines=3)
    assert tail == "line 97\nline 98\nline 99"
    assert lab_processes.log_tail(tmp_path / "missing") == "(no log)"


def test_cert_fingerprint_matches_the_device_format(tmp_path):
    from tandem.trust.identity import load_or_create

    identity = load_or_create(tmp_path / "identity", "dev-x", ["127.0.0.1"])
    fingerprint = certificate_fingerprint(Path(identity.cert_path).read_bytes())
    assert fingerprint == identity.fingerprint
    assert len(fingerprint.split(":")) == 32
