"""The CLI outside the lab: contexts (add, use, list, remove; kept 0600; a command without --url uses the current
one, `--context` or TANDEM_CONTEXT another), global options after the subcommand, `--device` as a URL,
`--output yaml`, shell completion."""

import json
import stat
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from devices import RunningDevice
from tandem.cli.global_options import hoist
from tandem.cli.main import app
from tandem.cli.output import OutputFormat


def test_a_session_with_contexts_against_a_real_device(runner: CliRunner, shared_device: RunningDevice,
                                                        tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text(shared_device.admin_password + "\n")
    added = runner.invoke(app, ["context", "add", "shared", "--url", shared_device.url, "--fingerprint",
                                shared_device.fingerprint, "--password-file", str(password)])
    assert added.exit_code == 0, added.output
    assert runner.invoke(app, ["context", "add", "elsewhere", "--url", "https://127.0.0.1:1"]).exit_code == 0
    kept = tmp_path / "config" / "tandem" / "contexts.json"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600 and stat.S_IMODE(kept.parent.stat().st_mode) == 0o700
    assert shared_device.admin_password not in kept.read_text()  # the file of the password, never the password

    # the first context added is current: no --url, no lab, and the command reaches the device
    made = runner.invoke(app, ["partition", "create", "ctx-part", "-o", "json"])  # a global option after it
    assert made.exit_code == 0 and json.loads(made.output)["name"] == "ctx-part", made.output
    listed = runner.invoke(app, ["partition", "list", "--output", "yaml"])
    assert listed.exit_code == 0 and "ctx-part" in [p["name"] for p in yaml.safe_load(listed.output)], listed.output

    # another context by option or environment; then made current
    refused = runner.invoke(app, ["partition", "list", "--context", "elsewhere"])
    assert refused.exit_code == 1 and "127.0.0.1:1" in refused.output
    assert runner.invoke(app, ["partition", "list"], env={"TANDEM_CONTEXT": "elsewhere"}).exit_code == 1
    assert runner.invoke(app, ["context", "use", "elsewhere"]).exit_code == 0
    contexts = json.loads(runner.invoke(app, ["context", "list", "-o", "json"]).output)
    assert [(c["name"], c["current"]) for c in contexts] == [("elsewhere", "*"), ("shared", "")]
    unknown = runner.invoke(app, ["partition", "list", "--context", "nowhere"])
    assert unknown.exit_code == 1 and "no context 'nowhere' (the contexts: elsewhere, shared)" in unknown.output

    # --device takes a URL as well as a lab device's name; --url still wins over any context
    by_device = runner.invoke(app, ["partition", "show", "ctx-part", "--device", shared_device.url, "--fingerprint",
                                    shared_device.fingerprint], env={"TANDEM_PASSWORD": shared_device.admin_password})
    assert by_device.exit_code == 0, by_device.output
    assert runner.invoke(app, ["context", "remove", "elsewhere"]).exit_code == 0
    assert json.loads(runner.invoke(app, ["context", "list", "-o", "json"]).output) == [
        {"current": "", "name": "shared", "url": shared_device.url, "username": "admin",
         "fingerprint": shared_device.fingerprint, "ca_file": "", "password_file": str(password)}]
    # --device names a context too (no lab device has that name): how `cluster create` reaches each device
    assert runner.invoke(app, ["partition", "show", "ctx-part", "--device", "shared"]).exit_code == 0
    assert runner.invoke(app, ["partition", "delete", "ctx-part", "--context", "shared"]).exit_code == 0


@pytest.mark.parametrize(("args", "expected"), [
    (["pool", "list", "-o", "json"], ["-o", "json", "pool", "list"]),
    (["cluster", "members", "--device", "dev-2"], ["--device", "dev-2", "cluster", "members"]),
    (["failover", "status", "--device", "dev-2"], ["failover", "status", "--device", "dev-2"]),  # its own option
    (["--url", "https://x", "pool", "show", "web", "--insecure"], ["--url", "https://x", "--insecure", "pool", "show",
                                                                      "web"]),
    (["pool", "create", "web", "--member", "-o", "--", "-o", "json"], ["pool", "create", "web", "--member", "-o",
                                                                        "--", "-o", "json"]),
    (["context", "add", "x", "--url", "https://y"], ["context", "add", "x", "--url", "https://y"]),
    (["agent", "run", "--output=json"], ["--output=json", "agent", "run"]),
])
def test_global_options_after_the_subcommand_move_before_it(args: list[str], expected: list[str]) -> None:
    group = typer.main.get_command(app)
    with group.make_context("tandem", ["--help"], resilient_parsing=True) as ctx:
        assert hoist(group, ctx, args) == expected


def test_yaml_is_an_output_and_completion_is_on(runner: CliRunner) -> None:
    assert OutputFormat("yaml") is OutputFormat.yaml
    shown = runner.invoke(app, ["--show-completion", "bash"], env={"SHELL": "/bin/bash"})
    assert shown.exit_code == 0 and "_TANDEM_COMPLETE" in shown.output, shown.output
