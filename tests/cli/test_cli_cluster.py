"""`tandem cluster` and the clustering of `tandem lab up` without a device: the command tree, argument
checks, how devices named on the command line are resolved, how a status is shown."""

import json
from pathlib import Path

import pytest
import typer
from cli_helpers import record_lab, walk_commands

from tandem.cli import contexts
from tandem.cli.cluster import Devices, show_status
from tandem.cli.connection import Settings
from tandem.cli.errors import CliError
from tandem.cli.main import app
from tandem.cli.output import Output
from tandem.lab import cluster as lab_cluster
from tandem.lab.state import LabState, load_lab

FP1 = ":".join(["a1"] * 32)
FP2 = ":".join(["b2"] * 32)

STATUS = {
    "name": "lab", "type": "sync-failover", "status": "Changes Pending",
    "members": [
        {"name": "dev-1", "status": "In Sync", "connected": True, "pending_changes": 0,
         "last_commit": {"dev-1": 12, "dev-2": 4}, "message": ""},
        {"name": "dev-2", "status": "Changes Pending", "connected": True, "pending_changes": 3,
         "last_commit": {"dev-1": 12, "dev-2": 7}, "message": "3 changes not sent"},
    ],
    "conflicts": [
        {"type": "write", "kind": "pools", "partition": "Common", "name": "web", "devices": ["dev-1", "dev-2"],
         "winner": {"device": "dev-2", "value": {}}, "loser": {"device": "dev-1", "value": {}},
         "message": "pool /Common/web changed on dev-1 and changed on dev-2 at the same time: dev-2's, the later, "
                    "is kept", "detected_at": "2026-11-24T03:40:00Z"},
        {"type": "integrity", "kind": "virtuals", "partition": "Common", "name": "www", "rule": "reference",
         "objects": ["/Common/www", "/Common/web"], "message": "virtual /Common/www uses pool /Common/web, which "
         "does not exist", "resolution": "not served"},
    ],
}


@pytest.fixture
def fake_lab(lab_dir: Path) -> LabState:
    """A lab.json for two devices (no processes: only for resolving names)."""
    return record_lab(lab_dir, (FP1, FP2), "password-{i}")


def test_the_tree_has_the_cluster_commands():
    paths = {path for path, _ in walk_commands(typer.main.get_command(app))}
    assert {("cluster", verb) for verb in ("create", "status", "add-device", "remove-device", "sync", "teardown",
                                           "list", "clear-conflicts")} <= paths
    up = dict(walk_commands(typer.main.get_command(app)))[("lab", "up")]
    assert {"--no-cluster", "--cluster-timeout"} <= {opt for param in up.params for opt in param.opts}


def test_create_without_devices_or_lab(runner):
    result = runner.invoke(app, ["cluster", "create", "dg"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: no devices: give --device")
    result = runner.invoke(app, ["cluster", "create", "dg", "--device", "dev-1"])
    assert result.exit_code == 1
    assert "'dev-1' is neither a URL, a context nor a lab device: no lab is up" in result.stderr


def test_create_refuses_a_bad_type(runner):
    result = runner.invoke(app, ["cluster", "create", "dg", "--type", "active-active"])
    assert result.exit_code == 2
    assert "active-active" in result.output


def test_commands_need_a_device(runner):
    for args in (["cluster", "status"], ["cluster", "sync", "lab", "--from", "dev-1"], ["cluster", "teardown", "lab"],
                 ["cluster", "add-device", "lab", "dev-3"], ["cluster", "remove-device", "lab", "dev-3"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 1, (args, result.output)
        assert result.stderr.startswith("error: no device to talk to"), (args, result.stderr)
    result = runner.invoke(app, ["--output", "json", "cluster", "status"])
    assert json.loads(result.stderr)["error"]["target"] == "--url"


def test_sync_needs_from(runner):
    result = runner.invoke(app, ["cluster", "sync", "lab"])
    assert result.exit_code == 2
    assert "--from" in result.output


def test_unknown_lab_device(runner, fake_lab):
    result = runner.invoke(app, ["cluster", "create", "dg", "--device", "dev-1", "--device", "dev-9"])
    assert result.exit_code == 1
    assert ("'dev-9' is not a URL nor a context, and no device 'dev-9' in the lab (devices: dev-1, dev-2)"
            in result.stderr)


def test_lab_up_refuses_a_cluster_too_big_before_starting_anything(runner, lab_dir):
    result = runner.invoke(app, ["lab", "up", "--devices", "33"])
    assert result.exit_code == 1
    assert "at most 32 devices" in result.stderr and "--no-cluster" in result.stderr
    assert load_lab(lab_dir) is None
    assert list(lab_dir.iterdir()) == []


def test_lab_group_type():
    assert [lab_cluster.lab_group_type(n) for n in (2, 8, 9, 32)] == ["sync-failover", "sync-failover",
                                                                     "sync-only", "sync-only"]


# -- how devices are named ----------------------------------------------------------------------

def test_a_lab_device_uses_its_url_fingerprint_and_password_file(fake_lab, lab_dir, tmp_path):
    other = tmp_path / "other-password"
    other.write_text("global-password\n")
    # global options are for URLs: a lab device keeps its own credentials
    devices = Devices(Settings(lab_dir=lab_dir, username="bob", password_file=other, fingerprint=FP1,
                               insecure=True, device="dev-1"))
    client = devices.named("dev-2")
    assert (client.url, client.username, client.password) == ("https://127.0.10.2:8443", "admin", "password-2")
    assert client.fingerprint == FP2.replace(":", "")
    assert devices.clients == [client]
    devices.close()
    assert devices.clients == []


def test_a_url_uses_the_global_credentials(fake_lab, lab_dir, tmp_path, monkeypatch):
    password_file = tmp_path / "pw"
    password_file.write_text("global-password\n")
    devices = Devices(Settings(lab_dir=lab_dir, username="carol", password_file=password_file, fingerprint=FP2))
    client = devices.named("https://192.0.2.10:8443")
    assert (client.url, client.username, client.password, client.fingerprint) == (
        "https://192.0.2.10:8443", "carol", "global-password", FP2.replace(":", ""))

    # a lab device's URL, without global options: that device's pin and password file
    monkeypatch.delenv("TANDEM_PASSWORD", raising=False)
    client = Devices(Settings(lab_dir=lab_dir)).named("https://127.0.10.2:8443")
    assert (client.username, client.password, client.fingerprint) == ("admin", "password-2", FP2.replace(":", ""))

    # TANDEM_PASSWORD for URLs
    monkeypatch.setenv("TANDEM_PASSWORD", "from-env")
    client = Devices(Settings(lab_dir=lab_dir, insecure=True)).named("https://192.0.2.11:8443")
    assert (client.password, client.fingerprint, client.verify) == ("from-env", None, False)


def test_a_context_names_a_device_with_its_own_pin_or_ca_bundle_and_password(fake_lab, lab_dir, tmp_path,
                                                                            monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("TANDEM_PASSWORD", raising=False)
    (tmp_path / "east-pw").write_text("east-password\n")
    (tmp_path / "west-pw").write_text("west-password\n")
    contexts.save(contexts.Contexts({
        "east": contexts.Context(url="https://192.0.2.30:8443", fingerprint=FP1, username="ops",
                                 password_file=str(tmp_path / "east-pw")),
        "west": contexts.Context(url="https://192.0.2.31:8443", ca_file=str(tmp_path / "ca.pem"),
                                 password_file=str(tmp_path / "west-pw")),
        "dev-2": contexts.Context(url="https://192.0.2.99:8443")}))
    devices = Devices(Settings(lab_dir=lab_dir, username="carol", fingerprint=FP2))
    east, west = devices.named("east"), devices.named("west")
    assert (east.url, east.username, east.password, east.fingerprint) == (
        "https://192.0.2.30:8443", "ops", "east-password", FP1.replace(":", ""))
    assert (west.username, west.password, west.fingerprint, west.verify) == (
        "admin", "west-password", None, str(tmp_path / "ca.pem"))
    assert devices.named("dev-2").url == "https://127.0.10.2:8443"  # a lab device's name comes first


def test_a_member_outside_the_lab_is_reached_where_its_trust_record_says(fake_lab, lab_dir, monkeypatch):
    monkeypatch.setenv("TANDEM_PASSWORD", "from-env")
    devices = Devices(Settings(lab_dir=lab_dir))
    assert devices.member("dev-2", None).password == "password-2"  # a lab device
    client = devices.member("far", {"name": "far", "management_url": "https://192.0.2.20:8443", "fingerprint": FP1})
    assert (client.url, client.password, client.fingerprint) == ("https://192.0.2.20:8443", "from-env",
                                                                 FP1.replace(":", ""))
    with pytest.raises(CliError, match="cannot reach member lost"):
        devices.member("lost", None)


# -- how a status is shown ----------------------------------------------------------------------

def test_show_status_as_tables(capsys):
    show_status(Output("table"), STATUS, seen_from="dev-1")
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert any("status" in line and "Changes Pending" in line for line in lines[:6])
    assert "seen from" in out
    assert out.index("members") < out.index("conflicts")
    member_line = next(line for line in lines if "dev-2" in line and "Changes Pending" in line)
    assert "3" in member_line and "dev-1=12, dev-2=7" in member_line and "3 changes not sent" in member_line
    conflict_line = next(line for line in lines if "pools" in line)
    assert "web" in conflict_line and "dev-2" in conflict_line and "2026-11-24" in conflict_line


def test_show_status_without_conflicts(capsys):
    show_status(Output("table"), {**STATUS, "status": "In Sync", "conflicts": []})
    captured = capsys.readouterr()
    assert "conflicts" not in captured.out
    assert "no conflicts" in captured.err


def test_show_status_as_json(capsys):
    show_status(Output("json"), STATUS, seen_from="dev-1")
    assert json.loads(capsys.readouterr().out) == STATUS


def test_show_status_without_the_group_line(capsys):
    show_status(Output("table"), STATUS, group=False)
    out = capsys.readouterr().out
    assert out.lstrip().startswith("members")
    assert "sync-failover" not in out
