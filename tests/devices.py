"""Real devices for tests: `tandem serve` processes on loopback, each with its own data directory."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tandem import Client
from tandem.trust.identity import certificate_fingerprint

ADMIN_PASSWORD = "lab-admin-pass"
START_TIMEOUT = 30.0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class RunningDevice:
    """One device daemon started by a test; `kill()` is kill -9, `start()` (re)starts it on the same data."""

    name: str
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    peer_port: int = field(default_factory=free_port)
    admin_password: str = ADMIN_PASSWORD
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    """Environment variables of its process beyond this one's (say test hooks)."""
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"{self.name}.log"

    @property
    def fingerprint(self) -> str:
        return certificate_fingerprint((self.data_dir / "identity" / "cert.pem").read_bytes())

    def start(self, tries: int = 3) -> "RunningDevice":
        """Start the device and wait until it answers. Its API port was free when chosen; if something took it
        since (an outbound connection's ephemeral port, say), another is chosen, up to `tries` times."""
        env = dict(os.environ, TANDEM_ADMIN_PASSWORD=self.admin_password, **self.env)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tandem", "serve", "--name", self.name, "--data-dir", str(self.data_dir),
             "--listen", f"{self.host}:{self.port}", *self._peer_args(), *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            self.wait_ready()
        except RuntimeError:
            taken = f"bind on address ('{self.host}', {self.port}): address already in use"
            if tries <= 1 or taken not in self.log_tail():
                raise
            self.stop()
            self.port = free_port(self.host)
            return self.start(tries - 1)
        return self

    def _peer_args(self) -> list[str]:
        """An explicit peer address (the default, port + 1, may be taken), unless the test gives one."""
        return [] if "--peer-listen" in self.extra_args else ["--peer-listen", f"{self.host}:{self.peer_port}"]

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/api/health", verify=False, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} not ready after {START_TIMEOUT} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def kill(self) -> None:
        """kill -9: the process gets no chance to flush or clean up."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        self._signal(signal.SIGTERM)

    def _signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> "RunningDevice":
        self.stop()
        return self.start()

    def client(self, username: str = "admin", password: str | None = None) -> Client:
        """An SDK client that pins this device's certificate."""
        return Client(self.url, username=username, password=password or self.admin_password,
                      fingerprint=self.fingerprint)


@contextlib.contextmanager
def running(base: Path, names: tuple[str, ...]) -> Iterator[list[Client]]:
    """Devices `names` started, each with its data directory in `base`; yields a pinned admin Client for each,
    and closes and stops them all when the block ends."""
    devices = [RunningDevice(name=name, data_dir=base / name) for name in names]
    clients: list[Client] = []
    try:
        for device in devices:
            device.start()
            clients.append(device.client())
        yield clients
    finally:
        for client in clients:
            client.close()
        for device in devices:
            device.stop()
