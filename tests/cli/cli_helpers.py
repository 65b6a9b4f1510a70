"""Helpers shared by the CLI tests (importable: pytest puts this directory on sys.path)."""

import json
import os
import random
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONNECTION_ENV = ("TANDEM_URL", "TANDEM_USERNAME", "TANDEM_PASSWORD", "TANDEM_FINGERPRINT", "TANDEM_DEVICE",
                  "TANDEM_LAB_DIR", "TANDEM_OUTPUT", "TANDEM_ADMIN_PASSWORD")


def run_tandem(*args: str, env: dict[str, str], timeout: float = 90, input: str | None = None
               ) -> subprocess.CompletedProcess[str]:
    """`python -m tandem ARGS` as a separate process."""
    return subprocess.run([sys.executable, "-m", "tandem", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, input=input)


def subprocess_env(**extra: str) -> dict[str, str]:
    """The test's environment without connection settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in (*CONNECTION_ENV, "COLUMNS")}
    env.update(extra)
    return env


def free(address: str, port: int) -> bool:
    """Nothing listens on address:port (connections in TIME_WAIT do not count: devices bind with SO_REUSEADDR)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True


def pick_block(also: tuple[tuple[int, int], ...] = (), devices: int = 2) -> tuple[str, int]:
    """A lab address base 127.x.y.1 and a port with the management and peer ports free on the first
    `devices` addresses, and each (last octet, port) of `also` free too (e.g. the demo's virtual server)."""
    rng = random.SystemRandom()
    for _ in range(50):
        prefix = f"127.{rng.randint(100, 254)}.{rng.randint(0, 255)}"
        port = rng.randint(20000, 60000)
        if (all(free(f"{prefix}.{i}", p) for i in range(1, devices + 1) for p in (port, port + 1))
                and all(free(f"{prefix}.{octet}", p) for octet, p in also)):
            return f"{prefix}.1", port
    raise RuntimeError("no free loopback block")


def gone(pid: int) -> bool:
    """The process has exited (or is a zombie)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return text.rpartition(")")[2].split()[0] in ("Z", "X")


@dataclass
class LabRun:
    """A lab started by a test: the tandem CLI pointed at it, and its lab.json."""

    dir: Path
    env: dict[str, str]
    base: str
    port: int

    def run(self, *args: str, input: str | None = None, **extra_env: str) -> subprocess.CompletedProcess[str]:
        return run_tandem(*args, env=dict(self.env, **extra_env), input=input, timeout=120)

    def json(self, *args: str, **extra_env: str) -> Any:
        result = self.run("--output", "json", *args, **extra_env)
        assert result.returncode == 0, f"tandem {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return json.loads(result.stdout)

    def state(self) -> dict:
        return json.loads((self.dir / "lab.json").read_text())

    def device(self, name: str) -> dict:
        return next(d for d in self.state()["devices"] if d["name"] == name)
