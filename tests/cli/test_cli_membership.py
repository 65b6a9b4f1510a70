"""`tandem cluster show`, `members`, `evacuate` and `restore` against two real devices on loopback (a
sync-failover group formed with the SDK), as tables and as JSON."""

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer

from devices import RunningDevice
from tandem import ClusterManager
from tandem.cli.main import app

FIELDS = {"server_name", "url", "database", "status", "message", "roles"}


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RunningDevice]]:
    base: Path = tmp_path_factory.mktemp("membership-cli")
    devices = [RunningDevice(name=name, data_dir=base / name) for name in ("dev-1", "dev-2")]
    try:
        for device in devices:
            device.start()
        clients = [device.client() for device in devices]
        ClusterManager().create(devices=clients, device_group_name="dg", timeout=30)
        for client in clients:
            client.close()
        yield devices
    finally:
        for device in devices:
            device.stop()


@pytest.fixture
def tandem(runner, pair):
    """Run `tandem --url DEV-1 ARGS` (pinned, admin); returns the result."""
    one = pair[0]

    def run(*args: str):
        return runner.invoke(app, ["--url", one.url, "--fingerprint", one.fingerprint, *args],
                             env={"TANDEM_PASSWORD": one.admin_password})

    return run


def test_the_tree_has_the_membership_commands():
    command = typer.main.get_command(app).commands["cluster"]
    assert {"show", "members", "evacuate", "restore"} <= set(command.commands)


def test_members_as_a_table_and_as_json(tandem, pair):
    result = tandem("cluster", "members")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    header = next(line for line in lines if "status" in line)
    for title in ("name", "url", "database", "status", "message", "roles"):
        assert title in header
    for device in pair:
        row = next(line for line in lines if device.url in line)
        assert device.name in row and "yes" in row and "database, failover" in row
    result = tandem("--output", "json", "cluster", "members")
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert [r["server_name"] for r in records] == ["dev-1", "dev-2"] and all(set(r) == FIELDS for r in records)
    assert [r["url"] for r in records] == [d.url for d in pair]


def test_show(tandem):
    result = tandem("cluster", "show")
    assert result.exit_code == 0, result.output
    for pattern in (r"server name +dev-1", r"enabled +yes", r"member config +url, username, password, fingerprint"):
        assert re.search(pattern, result.stdout), (pattern, result.stdout)
    info = json.loads(tandem("--output", "json", "cluster", "show").stdout)
    assert info["server_name"] == "dev-1" and info["enabled"] is True
    assert info["cluster_name"] == f"cluster-{info['uuid'][:8]}" and info["uuid"] in result.stdout


def test_evacuate_and_restore(tandem):
    result = tandem("cluster", "evacuate", "dev-2")
    assert result.exit_code == 0, result.output
    assert "evacuated dev-2" in result.stdout and "Evacuated" in result.stdout
    members = json.loads(tandem("--output", "json", "cluster", "members").stdout)
    assert [m["status"] for m in members if m["server_name"] == "dev-2"] == ["Evacuated"]
    result = tandem("--output", "json", "cluster", "restore", "dev-2")
    assert result.exit_code == 0, result.output
    restored = json.loads(result.stdout)
    assert restored["server_name"] == "dev-2" and restored["status"] == "Online"
    assert restored["message"] == "Fully operational"  # the answer waits until dev-1 hears dev-2 take it back


def test_an_unknown_member_is_an_error(tandem):
    result = tandem("cluster", "evacuate", "dev-9")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: no cluster member 'dev-9'")
