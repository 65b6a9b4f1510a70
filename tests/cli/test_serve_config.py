"""`tandem serve --config FILE`: the file's keys are the command's options, the command line wins, an unknown key
or a wrong shape is refused with its line before anything starts; `--log-format json` logs JSON lines; the
service unit in packaging/ passes `systemd-analyze verify` and its security review."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from devices import free_port
from tandem.cli.main import app
from waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


def test_an_unknown_key_or_a_wrong_shape_is_refused_with_its_line_and_nothing_starts(runner: CliRunner,
                                                                                    tmp_path: Path) -> None:
    config = tmp_path / "tandem.toml"
    data_dir = tmp_path / "data"
    for text, message in [
        (f'name = "dev-x"\ndata-dir = "{data_dir}"\n\nheartbeat-adress = ["127.0.0.1:9"]\n',
         "line 4: 'heartbeat-adress' is not an option of this command"),
        (f'name = "dev-x"\ndata-dir = "{data_dir}"\nnotify = "/bin/true"\n', "line 3: notify takes a list"),
        (f'name = "dev-x"\ndata-dir = "{data_dir}"\n[failover]\nquorum = true\n', "'failover' is not an option"),
        ('name = "dev-x\n', "not TOML"),
    ]:
        config.write_text(text)
        result = runner.invoke(app, ["serve", "--config", str(config)])
        assert result.exit_code == 2 and message in " ".join(result.output.replace("│", " ").split()), result.output
        assert not data_dir.exists()


def test_the_command_line_wins_over_the_file_and_json_logs_are_one_object_a_line(tmp_path: Path) -> None:
    file_port, flag_port = free_port(), free_port()
    data_dir = tmp_path / "data"
    config = tmp_path / "tandem.toml"
    config.write_text(f'name = "dev-c"\ndata-dir = "{data_dir}"\nlisten = "127.0.0.1:{file_port}"\n'
                      f'peer-listen = "127.0.0.1:{free_port()}"\nlog-format = "json"\nengine = "builtin"\n')
    log = tmp_path / "dev-c.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "tandem", "serve", "--config", str(config), "--listen",
                                    f"127.0.0.1:{flag_port}"], stdout=out, stderr=subprocess.STDOUT,
                                   env=dict(os.environ, TANDEM_ADMIN_PASSWORD="config-admin-pass"))
    try:
        wait_until(lambda: httpx.get(f"https://127.0.0.1:{flag_port}/api/health", verify=False).status_code == 200,
                   30, "the device on the command line's address", retry=(httpx.HTTPError,),
                   detail=log.read_text)
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"https://127.0.0.1:{file_port}/api/health", verify=False, timeout=1)
        wait_until(lambda: '"process":"failover"' in log.read_text(), 10, "the failover process's first line")
    finally:
        process.terminate()
        process.wait(30)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert lines and len(lines) == len(log.read_text().splitlines()), log.read_text()
    assert {line["device"] for line in lines} == {"dev-c"}
    assert {"management", "failover", "dataplane"} <= {line["process"] for line in lines}
    first = next(line for line in lines if line["message"].startswith("device dev-c"))
    assert first["level"] == "info" and first["logger"] == "tandem" and re.match(r"\d{4}-\d\d-\d\dT", first["time"])


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_service_unit_verifies_and_its_exposure_is_ok(tmp_path: Path) -> None:
    unit = tmp_path / "tandem.service"
    tandem = Path(sys.executable).with_name("tandem")
    unit.write_text((ROOT / "packaging" / "tandem.service").read_text().replace("/usr/local/bin/tandem", str(tandem)))
    verified = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert verified.returncode == 0 and "tandem.service" not in verified.stderr, verified.stderr
    review = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit)], capture_output=True,
                            text=True)
    exposure = re.search(r"Overall exposure level for tandem.service: ([\d.]+)", review.stdout)
    assert exposure and float(exposure.group(1)) <= 4.0, review.stdout[-2000:]
    text = unit.read_text()
    for setting in ("User=tandem", "StateDirectory=tandem", "ProtectSystem=strict", "NoNewPrivileges=yes",
                    "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE CAP_SYS_NICE"):
        assert setting in text.splitlines(), setting
