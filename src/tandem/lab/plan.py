"""Starting a lab (`tandem lab up`): the request checked before anything starts, then the devices, their
cluster and the demo.

Device `dev-i` listens on the i-th loopback address from the address base (all of 127/8 is local on
Linux, so no privileges are needed), on the same port, with its own data directory `DIR/dev-i` and log
`DIR/dev-i/daemon.log`. The lab's state is `DIR/lab.json`.

With two devices or more the lab also forms a cluster of them (unless asked not to): dev-1 trusts the
others and creates device group `lab` (sync-failover up to 8 devices, sync-only beyond), partition
Common, and waits until every device sees it In Sync. With a sync-failover cluster it also sets up the
demo (`tandem.lab.demo`): backends, a traffic group and a virtual server to curl and watch fail over.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tandem.lab.cluster import MAX_SYNC_FAILOVER, MAX_SYNC_ONLY, form_cluster
from tandem.lab.control import running_processes
from tandem.lab.demo import LAB_GROUP, PEER_PORT_OFFSET, check_vip, default_vip, setup_demo
from tandem.lab.errors import REQUEST_ERROR, LabError, Reporter
from tandem.lab.processes import device_addresses, port_in_use, start_devices
from tandem.lab.secrets import write_password
from tandem.lab.state import LabDevice, LabState, load_lab, remove_lab, save_lab
from tandem.models.api import DEFAULT_ENGINE, EngineRequest

DEFAULT_DEVICES = 2
DEFAULT_ADDRESS_BASE = "127.0.10.1"
DEFAULT_PORT = 8443
CLUSTER_TIMEOUT = 60.0
START_TIMEOUT = 30.0
DEMO_TIMEOUT = 30.0
PASSWORD_FILE = "admin-password"
"""The lab's admin password (mode 0600), given to every device on its first start: once formed, the devices
share their users."""
LOG_FILE = "daemon.log"


@dataclass(frozen=True)
class LabRequest:
    """What a lab is asked to be (the options of `tandem lab up`)."""

    lab_dir: Path
    devices: int = DEFAULT_DEVICES
    address_base: str = DEFAULT_ADDRESS_BASE
    """The loopback address of dev-1; dev-2 gets the next one, and so on."""
    port: int = DEFAULT_PORT
    """The management port, the same on every device (the peer channel's is the next one)."""
    timeout: float = START_TIMEOUT
    """Seconds to wait for the devices to answer."""
    cluster: bool = True
    """Form a cluster of the devices (when there are two or more)."""
    cluster_timeout: float = CLUSTER_TIMEOUT
    """Seconds to wait for the cluster to be In Sync."""
    vip: str | None = None
    """ADDRESS:PORT of the demo virtual server (None: the address base + 99, port 8080)."""
    demo: bool = True
    """Set up the demo (backends, traffic group, pool, virtual server) on a sync-failover cluster."""
    engine: EngineRequest = DEFAULT_ENGINE
    """The devices' data plane engine (`tandem serve --engine`)."""


@dataclass(frozen=True)
class LabPlan:
    """A request checked: the devices' addresses, and what to set up beyond the devices."""

    request: LabRequest
    addresses: list[str]
    cluster: bool
    destination: tuple[str, int] | None
    """Where the demo virtual server listens (None: no demo)."""


@dataclass
class LabStarted:
    """A lab that `start_lab` started."""

    state: LabState
    cluster: dict[str, Any] | None
    """The status of device group `lab` as dev-1 sees it (None: no cluster)."""
    demo: dict[str, Any] | None
    """What the demo set up (None: no demo)."""
    missing_password_files: list[str]
    """The admin password files the devices did not generate (their data predates the lab)."""


def plan_lab(reporter: Reporter, request: LabRequest) -> LabPlan:
    """Check `request` before anything starts; LabError naming the option at fault when it cannot be met."""
    cluster, demo = _what_to_form(request)
    _check_no_lab_up(reporter, request.lab_dir)
    addresses = device_addresses(request.address_base, request.devices)
    _check_ports(addresses, request.port)
    destination = None
    if demo:
        destination = check_vip(request.vip or default_vip(request.address_base), addresses, request.port)
    return LabPlan(request, addresses, cluster, destination)


def _what_to_form(request: LabRequest) -> tuple[bool, bool]:
    """Whether to form a cluster, and whether to set up the demo."""
    count = request.devices
    cluster = count >= 2 and request.cluster
    if cluster and count > MAX_SYNC_ONLY:
        raise LabError(f"a device group holds at most {MAX_SYNC_ONLY} devices: start at most {MAX_SYNC_ONLY} "
                       "or use --no-cluster", target="--devices", code=REQUEST_ERROR)
    demo = cluster and request.demo and count <= MAX_SYNC_FAILOVER
    if request.vip is not None and not demo:
        why = ("--no-demo" if not request.demo else "--no-cluster" if not request.cluster
               else "one device" if count < 2
               else f"a sync-only group (over {MAX_SYNC_FAILOVER} devices) has no traffic groups")
        raise LabError(f"--vip is for the demo virtual server, and there is none: {why}", target="--vip",
                       code=REQUEST_ERROR)
    return cluster, demo


def _check_no_lab_up(reporter: Reporter, lab_dir: Path) -> None:
    try:
        existing = load_lab(lab_dir)
    except ValueError as exc:
        raise LabError(f"{exc}; remove it or use another --dir", code=REQUEST_ERROR) from None
    if existing is None:
        return
    running = running_processes(existing)
    if running:
        raise LabError(f"a lab is already up in {lab_dir}: {', '.join(running)}; stop it with "
                       "`tandem lab down`", target="--dir", code="lab_exists")
    reporter.note(f"replacing the state of a stopped lab in {lab_dir}")


def _check_ports(addresses: list[str], port: int) -> None:
    busy = [a for a in addresses if port_in_use(a, port)]
    if busy:
        raise LabError(f"port {port} is already in use on {', '.join(busy)}", target="--port", code=REQUEST_ERROR)
    peer_port = port + PEER_PORT_OFFSET
    busy = [a for a in addresses if peer_port <= 65535 and port_in_use(a, peer_port)]
    if busy:
        raise LabError(f"port {peer_port} (the peer channel's, --port + {PEER_PORT_OFFSET}) is already in use on "
                       f"{', '.join(busy)}", target="--port", code=REQUEST_ERROR)


def start_lab(reporter: Reporter, request: LabRequest) -> LabStarted:
    """Check `request`, start the devices and wait until each answers, form their cluster and set up the
    demo as asked; the lab as started.

    LabError before anything starts when the request cannot be met, and after stopping what it started
    when a device does not start; once the devices are up, a failure leaves them up (`stop_lab` stops them).
    """
    plan = plan_lab(reporter, request)
    state = _start_devices(reporter, plan)
    cluster = None
    if plan.cluster:
        cluster = form_cluster(reporter, state, request.cluster_timeout)
        state.device_group = LAB_GROUP
        save_lab(state)
    demo = None
    if plan.destination is not None:
        demo = setup_demo(reporter, state, plan.destination, max(DEMO_TIMEOUT, request.cluster_timeout / 2))
    elif plan.cluster and request.demo:
        reporter.note(f"no virtual server to watch fail over: a sync-only group (over {MAX_SYNC_FAILOVER} "
                      "devices) has no traffic groups")
    missing = [d.password_file for d in state.devices if not Path(d.password_file).exists()]
    return LabStarted(state, cluster, demo, missing)


def _start_devices(reporter: Reporter, plan: LabPlan) -> LabState:
    """The lab's state with its devices started and healthy; on failure nothing runs and no lab.json is left."""
    request = plan.request
    request.lab_dir.mkdir(parents=True, exist_ok=True)
    password_file = request.lab_dir / PASSWORD_FILE
    write_password(password_file)  # one admin password for every device: users are the trust domain's
    state = LabState(dir=str(request.lab_dir), address_base=request.address_base, port=request.port,
                     created_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"))
    for i, address in enumerate(plan.addresses, start=1):
        data_dir = request.lab_dir / f"dev-{i}"
        state.devices.append(LabDevice(
            name=f"dev-{i}", url=f"https://{address}:{request.port}", listen=f"{address}:{request.port}",
            fingerprint=None, password_file=str(password_file), pid=None, data_dir=str(data_dir),
            log=str(data_dir / LOG_FILE), engine=request.engine,
        ))
    try:
        start_devices(reporter, state, state.devices, request.timeout, f"starting {request.devices} device(s)")
    except (LabError, KeyboardInterrupt):
        remove_lab(request.lab_dir)
        raise
    save_lab(state)
    return state
