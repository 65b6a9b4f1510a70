"""A lab that is up: finding it, stopping it, killing one of its processes and starting it again."""

from __future__ import annotations

import contextlib
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tandem.lab.cluster import failover_after_start
from tandem.lab.demo import backend_alive, start_backends, stop_backends
from tandem.lab.errors import REQUEST_ERROR, LabError, Reporter
from tandem.lab.processes import STOP_GRACE, port_in_use, process_alive, send_signal, start_devices, stop_devices
from tandem.lab.state import LabBackend, LabDevice, LabState, load_lab, remove_lab, save_lab


def require_lab(lab_dir: Path) -> LabState:
    """The lab that is up in `lab_dir`; LabError when there is none (or its lab.json is unreadable)."""
    try:
        state = load_lab(lab_dir)
    except ValueError as exc:
        raise LabError(str(exc), code=REQUEST_ERROR) from None
    if state is None:
        raise LabError(f"no lab is up in {lab_dir} (start one with `tandem lab up`)", target="--dir",
                       code=REQUEST_ERROR)
    return state


def lab_device(state: LabState, name: str) -> LabDevice:
    """The lab's device `name`; LabError (naming the lab's devices) when there is none."""
    try:
        return state.device(name)
    except LookupError as exc:
        raise LabError(str(exc), target="DEVICE", code=REQUEST_ERROR) from None


def running(target: LabDevice | LabBackend) -> bool:
    """Whether the lab's device or backend runs (its recorded pid is a live process of this lab)."""
    if isinstance(target, LabBackend):
        return backend_alive(target)
    return process_alive(target.pid, target.data_dir)


def running_processes(state: LabState) -> list[str]:
    """`NAME (pid PID)` of each device and backend of the lab that runs."""
    return [f"{t.name} (pid {t.pid})" for t in [*state.devices, *state.backends] if running(t)]


@dataclass
class Stopped:
    """What `stop_lab` did: how each device and backend ended (`stopped`, `killed`, `not running`), the
    directories it removed."""

    lab_dir: Path
    devices: dict[str, str]
    backends: dict[str, str]
    purged: list[str] = field(default_factory=list)


def stop_lab(lab_dir: Path, state: LabState, purge: bool = False) -> Stopped:
    """Stop every device and backend (SIGTERM, then SIGKILL) and forget the lab; with `purge`, also remove
    their directories (those inside `lab_dir` only), and `lab_dir` itself when nothing else lives there."""
    stopped = Stopped(lab_dir, stop_devices(state.devices), stop_backends(state.backends))
    left = [name for name, how in (stopped.devices | stopped.backends).items() if how == "still running"]
    if left:
        raise LabError(f"could not stop {', '.join(left)}", code=REQUEST_ERROR)
    remove_lab(lab_dir)
    if purge:
        for directory in [Path(d.data_dir) for d in state.devices] + [Path(b.dir) for b in state.backends]:
            if directory.is_dir() and directory.resolve().is_relative_to(lab_dir.resolve()):
                shutil.rmtree(directory, ignore_errors=True)
                stopped.purged.append(str(directory))
        with contextlib.suppress(OSError):
            lab_dir.rmdir()  # only when nothing else lives there
    return stopped


@dataclass
class Killed:
    """What `kill_process` killed, and the lab's devices that still run (the other one that takes over)."""

    target: LabDevice | LabBackend
    pid: int
    others: list[str]


def kill_process(state: LabState, name: str) -> Killed:
    """SIGKILL the lab's device or backend `name`, as a crash would, and wait until it is gone; it stays
    `killed` in lab.json until started again."""
    backend = state.backend(name)
    target: LabDevice | LabBackend = backend if backend is not None else lab_device(state, name)
    if not running(target):
        raise LabError(f"{target.name} is not running", target="NAME", code=REQUEST_ERROR)
    assert target.pid is not None
    pid = target.pid
    send_signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + STOP_GRACE
    while running(target):
        if time.monotonic() >= deadline:
            raise LabError(f"{target.name} (pid {pid}) is still alive after SIGKILL", code=REQUEST_ERROR)
        time.sleep(0.05)
    target.pid = None
    target.killed = True
    save_lab(state)
    others = [d.name for d in state.devices if d is not target and running(d)]
    return Killed(target, pid, others)


@dataclass
class Restarted:
    """What `start_again` started again; for a device of a lab with the demo, its failover state once it hears
    an active device (None when it does not say)."""

    target: LabDevice | LabBackend
    failover: dict[str, Any] | None = None


def start_again(reporter: Reporter, state: LabState, name: str, timeout: float) -> Restarted:
    """Start the lab's stopped device or backend `name` again, on the same data directory, address and port."""
    backend = state.backend(name)
    if backend is not None:
        _restart_backend(state, backend)
        return Restarted(backend)
    device = lab_device(state, name)
    if running(device):
        raise LabError(f"{device.name} is already running (pid {device.pid})", target="NAME", code=REQUEST_ERROR)
    address, _, port = device.listen.rpartition(":")
    if port_in_use(address, int(port)):
        raise LabError(f"port {port} is already in use on {address}", code=REQUEST_ERROR)
    try:
        start_devices(reporter, state, [device], timeout, f"starting {device.name}")
        device.killed = None
    finally:
        save_lab(state)
    group = failover_after_start(device, state.traffic_group) if state.traffic_group else None
    return Restarted(device, group)


def _restart_backend(state: LabState, backend: LabBackend) -> None:
    if running(backend):
        raise LabError(f"{backend.name} is already running (pid {backend.pid})", target="NAME", code=REQUEST_ERROR)
    if backend.port and port_in_use(backend.address, backend.port):
        raise LabError(f"port {backend.port} is already in use on {backend.address}", code=REQUEST_ERROR)
    start_backends(state, [backend])
