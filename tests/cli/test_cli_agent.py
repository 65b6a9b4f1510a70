"""`tandem agent run`: what it refuses before it starts, each with one clear line and a non-zero exit."""

from pathlib import Path

import pytest
from cli_helpers import run_tandem, subprocess_env

from devices import free_port


def agent(*args: str, password: str | None = "secret-pass") -> tuple[int, str]:
    env = subprocess_env(**({"TANDEM_PASSWORD": password} if password else {}))
    result = run_tandem("--insecure", "agent", "run", *args, env=env, timeout=60)
    return result.returncode, result.stderr


def base(folder: Path, port: int, **overrides: str) -> list[str]:
    options = {"--source": "file", "--path": str(folder), "--device": f"https://127.0.0.1:{port}",
               "--partition": "apps", "--environment": "test", "--host-id": "node-a"} | overrides
    return [part for item in options.items() for part in item]


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on (a device that does not answer)."""
    return free_port()


@pytest.mark.parametrize(("overrides", "says"), [
    ({"--source": "ldap"}, "--source 'ldap': kubernetes or file"),
    ({"--host-id": "Node_A"}, "lowercase letters"),
    ({"--environment": "-x"}, "lowercase letters"),
    ({"--path": "/nonexistent"}, "needs --path, an existing folder"),
    ({"--selector": "app in (web)"}, "--selector 'app in (web)': label requirements"),
    ({"--namespace": "Team_A"}, "--namespace 'Team_A': a namespace name"),
    ({"--load-balancer-class": "two words"}, "--load-balancer-class 'two words': a qualified name"),
    ({"--lease-store": "kubernetes"}, "--lease-store 'kubernetes': kubernetes (source kubernetes only)"),
    ({"--lease-store": "etcd"}, "--lease-store etcd goes with --etcd-endpoint"),
    ({"--etcd-endpoint": "http://127.0.0.1:2379"}, "--lease-store etcd goes with --etcd-endpoint"),
])
def test_bad_options_are_refused(tmp_path: Path, closed_port: int, overrides: dict, says: str) -> None:
    code, stderr = agent(*base(tmp_path, closed_port, **overrides))
    assert code != 0 and says in stderr, stderr


def test_an_address_pool_must_be_a_range(tmp_path: Path, closed_port: int) -> None:
    code, stderr = agent(*base(tmp_path, closed_port), "--address-pool", "traffic-group-1=10.0.0.9-10.0.0.1")
    assert code == 1 and "comes before the first" in stderr, stderr


def test_without_a_password_the_agent_does_not_start(tmp_path: Path, closed_port: int) -> None:
    code, stderr = agent(*base(tmp_path, closed_port), password=None)
    assert code == 1 and "--password-file or TANDEM_PASSWORD" in stderr, stderr


def test_no_device_answering_is_one_clear_error(tmp_path: Path, closed_port: int) -> None:
    code, stderr = agent(*base(tmp_path, closed_port))
    assert code == 1 and "cannot take this agent's lease: no device answers" in stderr, stderr
    assert "Traceback" not in stderr
