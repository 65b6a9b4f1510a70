"""`tandem certificate` against a real device: create from files, list, show, update, delete; the key file is
read and sent but never printed, in a table or in JSON."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from devices import RunningDevice
from pki import Issued, TestCA
from tandem.cli.main import app


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA()


@pytest.fixture
def tandem(runner: CliRunner, shared_device: RunningDevice):
    def run(*args: str) -> Result:
        return runner.invoke(app, ["--url", shared_device.url, "--fingerprint", shared_device.fingerprint, *args],
                             env={"TANDEM_PASSWORD": shared_device.admin_password})

    return run


def files(tmp_path: Path, issued: Issued, name: str) -> tuple[str, str]:
    cert, key = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    cert.write_text(issued.chain)
    key.write_text(issued.key)
    return str(cert), str(key)


def assert_no_key(output: str, issued: Issued) -> None:
    for line in issued.key.splitlines():
        if not line.startswith("-----"):
            assert line not in output
    assert "PRIVATE KEY" not in output


def test_create_list_show_update_delete(tandem, ca, tmp_path):
    issued = ca.issue("cli.example.com", "cli.example.com")
    cert, key = files(tmp_path, issued, "cli")
    created = tandem("certificate", "create", "cli", "--cert", cert, "--key", key)
    assert created.exit_code == 0, created.output
    assert "created certificate /Common/cli" in created.output and "cli.example.com" in created.output
    assert_no_key(created.output, issued)

    listed = tandem("certificate", "list")
    assert listed.exit_code == 0 and "cli.example.com" in listed.output and "valid" in listed.output
    shown = tandem("--output", "json", "certificate", "show", "cli")
    assert shown.exit_code == 0, shown.output
    record = json.loads(shown.stdout)
    assert "key" not in record and record["fingerprint"] == issued.fingerprint
    assert_no_key(shown.output, issued)

    renewed = ca.issue("cli.example.com", days=600, private=issued.private)
    new_cert, _ = files(tmp_path, renewed, "renewed")
    updated = tandem("--output", "json", "certificate", "update", "cli", "--cert", new_cert)
    assert updated.exit_code == 0, updated.output
    assert json.loads(updated.stdout)["fingerprint"] == renewed.fingerprint
    other = ca.issue("other.example.com")
    other_cert, other_key = files(tmp_path, other, "other")
    refused = tandem("certificate", "update", "cli", "--cert", other_cert)
    assert refused.exit_code != 0 and "does not match" in refused.output
    rekeyed = tandem("certificate", "update", "cli", "--cert", other_cert, "--key", other_key)
    assert rekeyed.exit_code == 0, rekeyed.output
    assert_no_key(rekeyed.output, other)

    deleted = tandem("certificate", "delete", "cli")
    assert deleted.exit_code == 0 and "deleted certificate /Common/cli" in deleted.output


def test_an_unreadable_key_file_is_a_clear_error(tandem, ca, tmp_path):
    cert, _ = files(tmp_path, ca.issue("x.example.com"), "x")
    result = tandem("certificate", "create", "x", "--cert", cert, "--key", str(tmp_path / "missing.key"))
    assert result.exit_code != 0 and "cannot read" in result.output and "missing.key" in result.output
