"""The lab's processes: spawning devices, checking their health, stopping them."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from tandem.lab.errors import LabError, Reporter
from tandem.lab.state import LabDevice, LabState, save_lab
from tandem.models.api import DEFAULT_ENGINE
from tandem.trust.identity import certificate_fingerprint

STOP_GRACE = 5.0
CERT_FILE = Path("identity") / "cert.pem"
LOG_TAIL_LINES = 25
SCRUBBED_ENV = ("TANDEM_ADMIN_PASSWORD", "TANDEM_PASSWORD", "TANDEM_URL", "TANDEM_FINGERPRINT")



def _proc_available() -> bool:
    return Path("/proc/self/stat").exists()


def process_alive(pid: int | None, data_dir: str | None = None, marker: str = "serve") -> bool:
    """Whether `pid` is a live (not zombie) `tandem serve` process for `data_dir` (or, with `marker`,
    another process of the lab whose arguments hold `marker` and `data_dir`).

    The command-line check guards against a recycled pid: a lab only ever signals its own processes.
    """
    if not pid or pid <= 0:
        return False
    if _proc_available():
        proc = Path(f"/proc/{pid}")
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            return False
        state = stat.rpartition(")")[2].split()[:1]
        if not state or state[0] in ("Z", "X", "x"):
            return False
        args = [a.decode(errors="replace") for a in cmdline.split(b"\0") if a]
        if marker not in args:
            return False
        return data_dir is None or data_dir in args
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def send_signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _wait_gone(devices: list[LabDevice], deadline: float, reap: Callable[[], None] | None = None) -> list[LabDevice]:
    while True:
        if reap is not None:
            reap()
        alive = [d for d in devices if process_alive(d.pid, d.data_dir)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)


def stop_devices(devices: Iterable[LabDevice], grace: float = STOP_GRACE,
                 reap: Callable[[], None] | None = None) -> dict[str, str]:
    """SIGTERM the live devices, SIGKILL those still alive after `grace` seconds.

    Returns how each device ended: `stopped`, `killed` or `not running`.
    """
    devices = list(devices)
    outcome = {d.name: "not running" for d in devices}
    alive = [d for d in devices if process_alive(d.pid, d.data_dir)]
    for device in alive:
        assert device.pid is not None
        send_signal(device.pid, signal.SIGTERM)
        outcome[device.name] = "stopped"
    stubborn = _wait_gone(alive, time.monotonic() + grace, reap)
    for device in stubborn:
        assert device.pid is not None
        send_signal(device.pid, signal.SIGKILL)
        outcome[device.name] = "killed"
    left = _wait_gone(stubborn, time.monotonic() + grace, reap)
    for device in left:
        outcome[device.name] = "still running"
    return outcome


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            text = f.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def device_addresses(address_base: str, count: int) -> list[str]:
    """`count` consecutive loopback addresses from `address_base`; LabError if they are not loopback."""
    try:
        base = ipaddress.ip_address(address_base)
    except ValueError:
        raise LabError(f"{address_base!r} is not an IP address", target="--address-base") from None
    if not isinstance(base, ipaddress.IPv4Address):
        raise LabError("the lab uses IPv4 loopback addresses (127.0.0.0/8)", target="--address-base")
    addresses = []
    for i in range(count):
        try:
            address = base + i
        except ipaddress.AddressValueError:
            address = None
        if address is None or not address.is_loopback:
            raise LabError(f"{count} devices from {address_base} leave the loopback range 127.0.0.0/8",
                           target="--address-base")
        addresses.append(str(address))
    return addresses


def port_in_use(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError:
            return True
    return False


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def spawn(device: LabDevice) -> subprocess.Popen[bytes]:
    """Start a device as a detached process (its own session), output appended to its log."""
    data_dir = Path(device.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(device.log, "ab") as log:
        stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        log.write(f"--- tandem lab: starting {device.name} on {device.listen} at {stamp}\n".encode())
        log.flush()
        return subprocess.Popen(
            [sys.executable, "-m", "tandem", "serve", "--name", device.name, "--data-dir", device.data_dir,
             "--listen", device.listen, "--engine", device.engine or DEFAULT_ENGINE,
             "--admin-password-file", device.password_file],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True, env=child_env(), cwd=data_dir,
        )


def check_health(device: LabDevice, timeout: float = 2.0) -> dict[str, Any] | None:
    """The device's /api/health answer (certificate pinned), or None when it does not answer."""
    from tandem.sdk import Client

    client = Client(device.url, fingerprint=device.fingerprint, verify=True, timeout=timeout)
    try:
        answer = client.health()
    except Exception:
        return None
    finally:
        closer = getattr(client, "close", None)
        if callable(closer):
            closer()
    if hasattr(answer, "model_dump"):
        answer = answer.model_dump(mode="json")
    return answer if isinstance(answer, dict) else {"status": str(answer)}


class StartFailed(Exception):
    def __init__(self, device: LabDevice, reason: str) -> None:
        super().__init__(reason)
        self.device = device
        self.reason = reason


def wait_ready(procs: dict[str, subprocess.Popen[bytes]], devices: list[LabDevice], timeout: float,
               on_ready: Callable[[LabDevice], None]) -> None:
    """Wait until every device has written its certificate and answers /api/health; fill in fingerprints.

    Raises StartFailed for the first device that exits or is not healthy within `timeout`.
    """
    deadline = time.monotonic() + timeout
    pending = list(devices)
    while pending:
        for device in list(pending):
            proc = procs[device.name]
            code = proc.poll()
            if code is not None:
                raise StartFailed(device, f"{device.name} exited with status {code}")
            if device.fingerprint is None:
                cert = Path(device.data_dir) / CERT_FILE
                try:
                    device.fingerprint = certificate_fingerprint(cert.read_bytes())
                except (OSError, ValueError):
                    continue  # not written yet (or half written)
            health = check_health(device, timeout=1.0)
            if health is not None and health.get("status") == "ok":
                pending.remove(device)
                on_ready(device)
        if pending:
            if time.monotonic() >= deadline:
                raise StartFailed(pending[0], f"{pending[0].name} did not answer /api/health within "
                                              f"{timeout:g} s")
            time.sleep(0.1)


def _progress(output: Reporter) -> Progress:
    return Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=output.err, transient=True, disable=not output.err.is_terminal,
    )


def start_devices(output: Reporter, state: LabState, devices: list[LabDevice], timeout: float, what: str) -> None:
    """Spawn `devices`, record their pids, wait until healthy; on failure stop them and raise LabError."""
    procs: dict[str, subprocess.Popen[bytes]] = {}

    def reap() -> None:
        for proc in procs.values():
            proc.poll()

    try:
        with _progress(output) as progress:
            task = progress.add_task(what, total=len(devices))
            for device in devices:
                device.fingerprint = None
                try:
                    procs[device.name] = spawn(device)
                except OSError as exc:
                    raise StartFailed(device, f"cannot start {device.name}: {exc}") from None
                device.pid = procs[device.name].pid
            save_lab(state)  # so that `lab down` finds the processes even if we are interrupted

            def ready(device: LabDevice) -> None:
                progress.advance(task)
                if not output.json:
                    output.note(f"{device.name} is up at {device.url}")

            wait_ready(procs, devices, timeout, ready)
    except (StartFailed, KeyboardInterrupt) as exc:
        failed = exc.device if isinstance(exc, StartFailed) else None
        stop_devices(devices, grace=STOP_GRACE, reap=reap)
        for proc in procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=1)
        for device in devices:
            device.pid = None
        if isinstance(exc, KeyboardInterrupt):
            raise
        assert failed is not None
        if Path(failed.log).exists():
            tail = log_tail(Path(failed.log))
            sys.stderr.write(f"--- last lines of {failed.log}:\n{tail}\n---\n")
        raise LabError(f"{exc.reason}; stopped what was started (log: {failed.log})",  # type: ignore[union-attr]
                       target=failed.name, code="lab_start_failed") from None


