"""Shared fixtures of the CLI tests."""

from collections.abc import Callable
from pathlib import Path

import pytest
from cli_helpers import CONNECTION_ENV
from typer.testing import CliRunner, Result

from tandem.cli.main import app


@pytest.fixture
def lab_dir(tmp_path: Path) -> Path:
    """An empty lab directory (no lab is up in it)."""
    path = tmp_path / "lab"
    path.mkdir()
    return path


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, lab_dir: Path, tmp_path: Path) -> dict[str, str | None]:
    """No connection settings inherited from the shell running the tests; the lab dir is empty; no contexts (a
    configuration directory of the test's own)."""
    for name in CONNECTION_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TANDEM_LAB_DIR", str(lab_dir))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return {"TANDEM_LAB_DIR": str(lab_dir), "XDG_CONFIG_HOME": str(tmp_path / "config")}


@pytest.fixture
def runner(clean_env: dict[str, str | None]) -> CliRunner:
    return CliRunner(env=clean_env)


@pytest.fixture
def before_connecting(runner: CliRunner) -> Callable[..., Result]:
    """Run `tandem --url https://127.0.0.1:1 ARGS` with a password set: for what is refused before connecting."""

    def run(*args: str) -> Result:
        return runner.invoke(app, ["--url", "https://127.0.0.1:1", *args], env={"TANDEM_PASSWORD": "x"})

    return run
