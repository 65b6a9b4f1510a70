"""Helpers shared by the CLI tests (importable: pytest puts this directory on sys.path)."""

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import pytest

from tandem import Client
from tandem.lab.processes import port_in_use
from tandem.lab.state import LabDevice, LabState, save_lab

CONNECTION_ENV = ("TANDEM_URL", "TANDEM_USERNAME", "TANDEM_PASSWORD", "TANDEM_FINGERPRINT", "TANDEM_DEVICE",
                  "TANDEM_LAB_DIR", "TANDEM_OUTPUT", "TANDEM_ADMIN_PASSWORD", "TANDEM_CONTEXT")


def walk_commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(path, command) of `command` and of every command below it (`walk_commands(typer.main.get_command(app))`)."""
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from walk_commands(sub, (*path, name))


def record_lab(lab_dir: Path, fingerprints: Sequence[str], password: str) -> LabState:
    """A lab.json in `lab_dir` for devices dev-1, dev-2, ... (one per fingerprint) on 127.0.10.N:8443, each with
    an admin-password file holding `password.format(i=N)`; no processes: for resolving names only."""
    state = LabState(dir=str(lab_dir), address_base="127.0.10.1", port=8443)
    for i, fingerprint in enumerate(fingerprints, start=1):
        data_dir = lab_dir / f"dev-{i}"
        data_dir.mkdir(parents=True)
        (data_dir / "admin-password").write_text(password.format(i=i) + "\n")
        state.devices.append(LabDevice(
            name=f"dev-{i}", url=f"https://127.0.10.{i}:8443", listen=f"127.0.10.{i}:8443", fingerprint=fingerprint,
            password_file=str(data_dir / "admin-password"), pid=None, data_dir=str(data_dir),
            log=str(data_dir / "daemon.log")))
    save_lab(state)
    return state


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
    return not port_in_use(address, port)


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
    """A lab started by a test (`LabRun.started`): the tandem CLI pointed at it, and its lab.json."""

    dir: Path
    env: dict[str, str]
    base: str
    port: int
    up: subprocess.CompletedProcess[str] = field(init=False, repr=False)
    """What `tandem lab up` printed."""

    @classmethod
    @contextlib.contextmanager
    def started(cls, lab_dir: Path, *options: str, devices: int = 2, also: tuple[tuple[int, int], ...] = ()
                ) -> Iterator[Self]:
        """`tandem lab up --devices N OPTIONS` in `lab_dir` on a free loopback block (`pick_block(also)`),
        failing the test if that fails; the lab is always taken down at the end (`down`)."""
        base, port = pick_block(also, devices)
        lab = cls(dir=lab_dir, env=subprocess_env(TANDEM_LAB_DIR=str(lab_dir)), base=base, port=port)
        try:
            lab.up = run_tandem("lab", "up", "--devices", str(devices), "--address-base", base, "--port", str(port),
                                *options, env=lab.env, timeout=180)
            if lab.up.returncode != 0:
                pytest.fail(f"lab up failed:\n{lab.up.stdout}\n{lab.up.stderr}")
            yield lab
        finally:
            lab.down()

    def down(self) -> None:
        """`tandem lab down --purge`, then SIGKILL whatever of the lab still runs: never leave a process behind."""
        state_file = self.dir / "lab.json"
        if not state_file.exists():
            return
        state = json.loads(state_file.read_text())
        pids = [p["pid"] for p in state["devices"] + state.get("backends", []) if p.get("pid")]
        run_tandem("lab", "down", "--purge", env=self.env, timeout=60)
        for pid in pids:
            with contextlib.suppress(OSError):  # gone meanwhile
                if not gone(pid) and str(self.dir).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)

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

    def client(self, name: str) -> Client:
        """An SDK client of lab device `name`: admin, its password file, its fingerprint pinned (close it)."""
        device = self.device(name)
        return Client(device["url"], "admin", Path(device["password_file"]).read_text().strip(),
                      fingerprint=device["fingerprint"])
