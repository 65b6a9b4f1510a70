"""How a lab is doing: each device and backend, whether it runs and answers; who is active for the demo."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from tandem.lab.cluster import admin_client, failover_state
from tandem.lab.control import running
from tandem.lab.demo import backend_answers, fetch, split_host_port
from tandem.lab.errors import LabError
from tandem.lab.processes import check_health
from tandem.lab.state import LabBackend, LabDevice, LabState


@dataclass
class LabStatus:
    """One row per device (`kind` device: pid, alive, state, health, engine, and with the demo `failover`
    and `failover_forced`) and per backend (`kind` backend)."""

    devices: list[dict[str, Any]]
    backends: list[dict[str, Any]]

    @property
    def active_devices(self) -> list[str]:
        """The devices that say they are active for the demo's traffic group."""
        return [row["name"] for row in self.devices if row.get("failover") == "active"]


def lab_status(state: LabState) -> LabStatus:
    """Ask each device of the lab (at once) and each backend how it is doing."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max(1, min(8, len(state.devices)))) as pool:
        devices = list(pool.map(lambda device: device_row(state, device), state.devices))
    return LabStatus(devices, [backend_row(backend) for backend in state.backends])


def process_state(alive: bool, killed: bool | None, pid: int | None) -> str:
    """`running`, `killed` (by `tandem lab kill`), `dead` (it had a pid) or `stopped`."""
    if alive:
        return "running"
    if killed:
        return "killed"
    return "dead" if pid else "stopped"


def device_row(state: LabState, device: LabDevice) -> dict[str, Any]:
    """The device's status row: its process, its /api/health, its data plane engine (`haproxy 2.6.12`; None
    when it does not say) and, with the demo, its failover state."""
    alive = running(device)
    health = check_health(device) if alive else None
    row = {
        "kind": "device", "name": device.name, "url": device.url, "pid": device.pid if alive else None,
        "alive": alive, "state": process_state(alive, device.killed, device.pid),
        "health": (health or {}).get("status", "not answering") if alive else "-",
        "engine": device_engine(device) if health else None,
        "fingerprint": device.fingerprint, "data_dir": device.data_dir, "log": device.log,
    }
    if state.traffic_group:
        group = failover_state(device, state.traffic_group) if health else None
        row |= failover_fields(group, bool(alive and health))
    return row


def device_engine(device: LabDevice, timeout: float = 2.0) -> str | None:
    """`NAME VERSION` of the data plane engine the device says it runs (`GET /api/device`, logged in with the
    lab's admin password file); None when it does not answer or say."""
    try:
        client = admin_client(device, timeout=timeout)
    except LabError:
        return None
    try:
        engine = client.device().get("engine") or {}
    except Exception:
        return None
    finally:
        with contextlib.suppress(Exception):
            client.close()
    return f"{engine['name']} {engine['version']}" if engine.get("name") else None


def failover_fields(group: dict[str, Any] | None, answering: bool) -> dict[str, Any]:
    """A status row's failover fields: the device's state for the lab's traffic group ("?" when it does
    not say, None when the device does not answer) and whether it was forced to standby."""
    if not answering:
        return {"failover": None, "failover_forced": False}
    if group is None:
        return {"failover": "?", "failover_forced": False}
    return {"failover": group.get("state"), "failover_forced": bool(group.get("declined"))}


def backend_row(backend: LabBackend) -> dict[str, Any]:
    """The backend's status row: its process, and whether it answers with its name."""
    alive = running(backend)
    return {
        "kind": "backend", "name": backend.name, "url": backend.url, "pid": backend.pid if alive else None,
        "alive": alive, "state": process_state(alive, backend.killed, backend.pid),
        "health": ("ok" if backend_answers(backend) else "not answering") if alive else "-",
        "log": backend.log,
    }


def vip_answer(state: LabState) -> str:
    """The first line of what the demo virtual server answers (the backend's name), or `no answer`."""
    if not state.vip:
        return "no answer"
    address, port = split_host_port(state.vip, "vip")
    body = fetch(address, port, timeout=1.0)
    return body.split("\n", 1)[0] if body else "no answer"
