"""`tandem lab`: several devices on this host, one `tandem serve` process each.

Device `dev-i` listens on the i-th loopback address from `--address-base` (all of 127/8 is
local on Linux, so no privileges are needed), on the same port, with its own data directory
`DIR/dev-i` and log `DIR/dev-i/daemon.log`. The lab's state is `DIR/lab.json`.

With two devices or more, `lab up` also forms a cluster of them (unless --no-cluster): dev-1
trusts the others and creates device group `lab` (sync-failover up to 8 devices, sync-only
beyond), partition Common, and the command waits until every device sees it In Sync.

With a sync-failover cluster it also sets up something to curl and watch fail over (unless
--no-demo): two HTTP backends `backend-1` and `backend-2` (`python -m tandem.lab.backends`,
detached processes on 127.0.0.1, free ports, directory `DIR/backend-i`), traffic group
`traffic-group-1` (HA order dev-1..dev-N), an http monitor, pool `web` of the two backends and
virtual server `www` on a floating loopback address (`--vip`, default the address base + 99,
port 8080: 127.0.10.100:8080), and waits until the virtual server answers.
"""

from __future__ import annotations

import contextlib
import datetime
import shutil
import signal
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from tandem.cli.connection import Settings, read_password_file
from tandem.cli.errors import CliError
from tandem.cli.output import Column, Output
from tandem.lab.demo import (
    DEMO_MONITOR,
    DEMO_POOL,
    DEMO_TRAFFIC_GROUP,
    DEMO_VIRTUAL,
    LAB_GROUP,
    PEER_PORT_OFFSET,
    backend_alive,
    backend_answers,
    check_vip,
    default_vip,
    demo_hints,
    fetch,
    program,
    setup_demo,
    split_host_port,
    start_backends,
    stop_backends,
)
from tandem.lab.processes import (
    STOP_GRACE,
    check_health,
    device_addresses,
    port_in_use,
    process_alive,
    send_signal,
    start_devices,
    stop_devices,
)
from tandem.lab.state import LabBackend, LabDevice, LabState, default_lab_dir, load_lab, remove_lab, save_lab
from tandem.models import DEFAULT_PARTITION
from tandem.models.cluster import GROUP_LIMITS, IN_SYNC, SYNC_FAILOVER, SYNC_ONLY

app = typer.Typer(
    help="A local lab: several devices on this host, each on its own loopback address (127.0.10.1, "
         "127.0.10.2, ...) with its own data directory. Other commands use it when no --url is given.",
    no_args_is_help=True,
)

DEFAULT_DEVICES = 2
DEFAULT_ADDRESS_BASE = "127.0.10.1"
DEFAULT_PORT = 8443
MAX_SYNC_FAILOVER = GROUP_LIMITS[SYNC_FAILOVER]
MAX_SYNC_ONLY = GROUP_LIMITS[SYNC_ONLY]
CLUSTER_TIMEOUT = 60.0
START_TIMEOUT = 30.0
PASSWORD_FILE = "admin-password"
LOG_FILE = "daemon.log"
DEMO_TIMEOUT = 30.0

LAB_COLUMNS = [
    Column("name"),
    Column("url", "management URL"),
    Column("fingerprint", "certificate fingerprint (SHA-256)"),
    Column("password_file", "admin password file"),
]
STATUS_COLUMNS = [
    Column("name"),
    Column("url", "URL"),
    Column("pid"),
    Column("state"),
    Column("health"),
]
FAILOVER_COLUMN = Column("failover", render=lambda v, r: "-" if v is None else f"{v}" + (
    " (forced)" if r.get("failover_forced") else ""))
BACKEND_COLUMNS = [
    Column("name"),
    Column("url", "URL"),
    Column("pid"),
    Column("state"),
    Column("health"),
]

DirOption = Annotated[Path | None, typer.Option(
    "--dir", file_okay=False, show_default=False,
    help="The lab directory. [default: --lab-dir, TANDEM_LAB_DIR or /tmp/tandem-lab]",
)]


# -- commands -----------------------------------------------------------------------------------

def _settings(ctx: typer.Context) -> Settings:
    return ctx.obj if isinstance(ctx.obj, Settings) else Settings()


def _lab_dir(ctx: typer.Context, directory: Path | None) -> Path:
    path = directory or _settings(ctx).lab_dir or default_lab_dir()
    return Path(path).absolute()


def _require_lab(lab_dir: Path) -> LabState:
    try:
        state = load_lab(lab_dir)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if state is None:
        raise CliError(f"no lab is up in {lab_dir} (start one with `tandem lab up`)", target="--dir")
    return state


def _device(state: LabState, name: str) -> LabDevice:
    try:
        return state.device(name)
    except LookupError as exc:
        raise CliError(str(exc), target="DEVICE") from None


def _lab_rows(state: LabState) -> list[dict[str, Any]]:
    return [{"name": d.name, "url": d.url, "fingerprint": d.fingerprint, "password_file": d.password_file,
             "pid": d.pid, "data_dir": d.data_dir, "log": d.log} for d in state.devices]


@app.command()
def up(
    ctx: typer.Context,
    devices: Annotated[int, typer.Option("--devices", "-n", min=1, max=64, help="How many devices.")]
    = DEFAULT_DEVICES,
    directory: DirOption = None,
    address_base: Annotated[str, typer.Option(
        "--address-base", help="Loopback address of dev-1; dev-2 gets the next one, and so on.",
    )] = DEFAULT_ADDRESS_BASE,
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Management port (the same on every device).")]
    = DEFAULT_PORT,
    timeout: Annotated[float, typer.Option("--timeout", min=1.0, help="Seconds to wait for the devices to answer.")]
    = START_TIMEOUT,
    no_cluster: Annotated[bool, typer.Option(
        "--no-cluster", help="Do not form a cluster: leave each device alone in its own trust domain.",
    )] = False,
    cluster_timeout: Annotated[float, typer.Option(
        "--cluster-timeout", min=1.0, help="Seconds to wait for the cluster to be In Sync.",
    )] = CLUSTER_TIMEOUT,
    vip: Annotated[str | None, typer.Option(
        "--vip", metavar="ADDR:PORT", show_default=False,
        help="Where the demo virtual server listens (a loopback address). [default: --address-base + 99, "
             "port 8080: 127.0.10.100:8080]",
    )] = None,
    no_demo: Annotated[bool, typer.Option(
        "--no-demo", help="No backends, traffic group, pool nor virtual server: only the devices and the cluster.",
    )] = False,
) -> None:
    """Start a lab of --devices devices dev-1..dev-N and wait until each one answers.

    With 2 devices or more, also forms a cluster of them: device group `lab` (sync-failover up to 8
    devices, sync-only beyond, partition Common), waited for until In Sync; --no-cluster skips it.

    A sync-failover lab also gets a virtual server to curl and watch fail over (unless --no-demo): two
    HTTP backends (backend-1, backend-2 on 127.0.0.1), traffic group traffic-group-1 (HA order dev-1,
    dev-2, ...), monitor web-http, pool web and virtual server www on --vip, active on dev-1.

    Prints each device's management URL, certificate fingerprint and admin password file, the group,
    and how to watch a failover.
    """
    output = _settings(ctx).output
    cluster = devices >= 2 and not no_cluster
    if cluster and devices > MAX_SYNC_ONLY:
        raise CliError(f"a device group holds at most {MAX_SYNC_ONLY} devices: start at most {MAX_SYNC_ONLY} "
                       "or use --no-cluster", target="--devices")
    demo = cluster and not no_demo and devices <= MAX_SYNC_FAILOVER
    if vip is not None and not demo:
        why = ("--no-demo" if no_demo else "--no-cluster" if no_cluster else "one device" if devices < 2
               else f"a sync-only group (over {MAX_SYNC_FAILOVER} devices) has no traffic groups")
        raise CliError(f"--vip is for the demo virtual server, and there is none: {why}", target="--vip")
    lab_dir = _lab_dir(ctx, directory)
    try:
        existing = load_lab(lab_dir)
    except ValueError as exc:
        raise CliError(f"{exc}; remove it or use another --dir") from None
    if existing is not None:
        running = [f"{d.name} (pid {d.pid})" for d in existing.devices if process_alive(d.pid, d.data_dir)]
        running += [f"{b.name} (pid {b.pid})" for b in existing.backends if backend_alive(b)]
        if running:
            raise CliError(f"a lab is already up in {lab_dir}: {', '.join(running)}; stop it with "
                           "`tandem lab down`", target="--dir", code="lab_exists")
        output.note(f"replacing the state of a stopped lab in {lab_dir}")

    addresses = device_addresses(address_base, devices)
    busy = [a for a in addresses if port_in_use(a, port)]
    if busy:
        raise CliError(f"port {port} is already in use on {', '.join(busy)}", target="--port")
    peer_port = port + PEER_PORT_OFFSET
    busy = [a for a in addresses if peer_port <= 65535 and port_in_use(a, peer_port)]
    if busy:
        raise CliError(f"port {peer_port} (the peer channel's, --port + {PEER_PORT_OFFSET}) is already in use on "
                       f"{', '.join(busy)}", target="--port")
    destination = check_vip(vip or default_vip(address_base), addresses, port) if demo else None

    lab_dir.mkdir(parents=True, exist_ok=True)
    state = LabState(dir=str(lab_dir), address_base=address_base, port=port,
                     created_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"))
    for i, address in enumerate(addresses, start=1):
        name = f"dev-{i}"
        data_dir = lab_dir / name
        state.devices.append(LabDevice(
            name=name, url=f"https://{address}:{port}", listen=f"{address}:{port}", fingerprint=None,
            password_file=str(data_dir / PASSWORD_FILE), pid=None, data_dir=str(data_dir),
            log=str(data_dir / LOG_FILE),
        ))
    try:
        start_devices(output, state, state.devices, timeout, f"starting {devices} device(s)")
    except (CliError, KeyboardInterrupt):
        remove_lab(lab_dir)
        raise
    save_lab(state)
    group_status = None
    if cluster:
        group_status = form_cluster(output, state, cluster_timeout)
        state.device_group = LAB_GROUP
        save_lab(state)
    demo_info = None
    if destination is not None:
        demo_info = setup_demo(output, state, destination, max(DEMO_TIMEOUT, cluster_timeout / 2))
    elif cluster and not no_demo:
        output.note(f"no virtual server to watch fail over: a sync-only group (over {MAX_SYNC_FAILOVER} devices) "
                    "has no traffic groups")
    if output.json:
        output.print_json({**state.to_dict(), "cluster": group_status, "demo": demo_info})
        return
    output.records(_lab_rows(state), LAB_COLUMNS, title=f"lab in {lab_dir}")
    missing = [d.password_file for d in state.devices if not Path(d.password_file).exists()]
    if missing:
        output.note(f"note: no generated admin password file at {', '.join(missing)}")
    if group_status is not None:
        from tandem.cli.cluster import show_status

        output.out.print()
        output.out.print(f"device group {LAB_GROUP} ({group_status.get('type')}, partition {DEFAULT_PARTITION}): "
                         f"{group_status.get('status')}", style="bold", highlight=False)
        show_status(output, group_status, group=False)
    if demo_info is not None:
        output.out.print()
        output.out.print(f"virtual server {DEMO_VIRTUAL} on http://{state.vip}/ (traffic group {DEMO_TRAFFIC_GROUP}, "
                         f"active on {demo_info['active_device']}), pool {DEMO_POOL}: "
                         + ", ".join(f"{b.name} {b.url}" for b in state.backends), style="bold", highlight=False)
        output.out.print("Watch it fail over:", highlight=False)
        for line in demo_hints(state, lab_dir):
            output.out.print(f"  {line}", highlight=False, soft_wrap=True)


def lab_group_type(count: int) -> str:
    """The type of the lab's device group for `count` devices: sync-failover while it may be, else sync-only."""
    return SYNC_FAILOVER if count <= MAX_SYNC_FAILOVER else SYNC_ONLY


def form_cluster(output: Output, state: LabState, timeout: float) -> dict[str, Any]:
    """Form device group `lab` of every lab device (dev-1 the root) and wait until In Sync; its status.

    On failure the devices stay up (`tandem lab down` stops them) and CliError says what went wrong.
    """
    from tandem.sdk import Client, ClusterManager, DeviceGroup, TandemError

    group_type = lab_group_type(len(state.devices))
    clients: list[Client] = []
    try:
        for device in state.devices:
            password = read_password_file(Path(device.password_file), option="lab admin password file")
            clients.append(Client(device.url, "admin", password, fingerprint=device.fingerprint))
        try:
            DeviceGroup(name=LAB_GROUP).get(connection=clients[0])
            kept = True
        except TandemError as exc:
            if exc.status_code != 404:
                raise
            kept = False
        if kept:
            # the lab was started again on the data of an earlier one (`lab down` without --purge)
            if not output.json:
                output.note(f"cluster {LAB_GROUP} is in the devices' data already: waiting until it is In Sync")
            ClusterManager().manage_existing(devices=clients, device_group_name=LAB_GROUP,
                                             device_group_type=group_type, device_group_partition=DEFAULT_PARTITION)
            return _wait_in_sync(clients, [d.name for d in state.devices], timeout)
        if not output.json:
            output.note(f"forming cluster {LAB_GROUP} ({group_type}) of {len(clients)} devices")
        ClusterManager().create(devices=clients, device_group_name=LAB_GROUP, device_group_type=group_type,
                                device_group_partition=DEFAULT_PARTITION, timeout=timeout,
                                progress=None if output.json else output.note)
        return DeviceGroup(name=LAB_GROUP).status(connection=clients[0])
    except (TandemError, CliError) as exc:
        message = getattr(exc, "message", str(exc))
        hint = "; `tandem lab down --purge` stops them and removes their data" if getattr(
            exc, "code", None) == "cluster_mismatch" else " (`tandem lab down` stops them)"
        raise CliError(f"the devices are up, but forming cluster {LAB_GROUP} failed: {message}{hint}",
                       target=getattr(exc, "target", None), code=getattr(exc, "code", "cluster_failed")) from None
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                client.close()


def _wait_in_sync(clients: list[Any], names: list[str], timeout: float) -> dict[str, Any]:
    """Wait until every device sees group `lab` In Sync; the first device's view of it."""
    from tandem.sdk import DeviceGroup, TandemError

    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    for client, name in zip(clients, names, strict=True):
        while True:
            last = DeviceGroup(name=LAB_GROUP).status(connection=client)
            members = last.get("members") or []
            if last.get("status") == IN_SYNC and all(m.get("status") == IN_SYNC for m in members):
                break
            if time.monotonic() >= deadline:
                raise TandemError(None, "timeout", f"waited {timeout:g} s for {name} to see {LAB_GROUP} In Sync; "
                                                   f"it sees {last.get('status')}")
            time.sleep(0.1)
    return DeviceGroup(name=LAB_GROUP).status(connection=clients[0])


@app.command()
def down(
    ctx: typer.Context,
    directory: DirOption = None,
    purge: Annotated[bool, typer.Option("--purge", help="Also remove the devices' data directories.")] = False,
) -> None:
    """Stop every device and backend of the lab (SIGTERM, then SIGKILL after 5 s) and forget the lab.

    Data directories are kept, unless --purge.
    """
    output = _settings(ctx).output
    lab_dir = _lab_dir(ctx, directory)
    state = _require_lab(lab_dir)
    outcome = stop_devices(state.devices)
    backends = stop_backends(state.backends)
    left = [name for name, how in (outcome | backends).items() if how == "still running"]
    if left:
        raise CliError(f"could not stop {', '.join(left)}")
    remove_lab(lab_dir)
    purged: list[str] = []
    if purge:
        for data_dir in [Path(d.data_dir) for d in state.devices] + [Path(b.dir) for b in state.backends]:
            if data_dir.is_dir() and data_dir.resolve().is_relative_to(lab_dir.resolve()):
                shutil.rmtree(data_dir, ignore_errors=True)
                purged.append(str(data_dir))
        with contextlib.suppress(OSError):
            lab_dir.rmdir()  # only when nothing else lives there
    if output.json:
        output.print_json({"dir": str(lab_dir), "devices": outcome, "backends": backends, "purged": purged})
        return
    for name, how in (outcome | backends).items():
        output.out.print(f"{name}: {how}")
    output.done(f"lab in {lab_dir} is down" + (" and its data removed" if purge else ""))


def _process_state(alive: bool, killed: bool | None, pid: int | None) -> str:
    if alive:
        return "running"
    if killed:
        return "killed"
    return "dead" if pid else "stopped"


def failover_state(device: LabDevice, traffic_group: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """The device's entry for `traffic_group` in its failover status (logged in with the lab's admin
    password file), or None when it does not answer."""
    from tandem.sdk import Client, Failover

    try:
        password = read_password_file(Path(device.password_file), option="lab admin password file")
    except CliError:
        return None
    client = Client(device.url, "admin", password, fingerprint=device.fingerprint, timeout=timeout)
    try:
        return Failover(client).traffic_group(traffic_group)
    except Exception:
        return None
    finally:
        with contextlib.suppress(Exception):
            client.close()


def _failover_cell(group: dict[str, Any] | None) -> str:
    if group is None:
        return "?"
    return str(group.get("state")) + (" (forced)" if group.get("declined") else "")


def _failover_fields(group: dict[str, Any] | None, answering: bool) -> dict[str, Any]:
    """A status row's failover fields: the device's state for the lab's traffic group ("?" when it does
    not say, None when the device does not answer) and whether it was forced to standby."""
    if not answering:
        return {"failover": None, "failover_forced": False}
    if group is None:
        return {"failover": "?", "failover_forced": False}
    return {"failover": group.get("state"), "failover_forced": bool(group.get("declined"))}


@app.command()
def status(ctx: typer.Context, directory: DirOption = None) -> None:
    """Show each lab device and backend: URL, pid, whether it runs and answers; each device's failover state.

    Devices answer /api/health; with the demo, the `failover` column is each device's state for
    traffic-group-1 and the last line says which device is active and what the virtual server answers.
    """
    from concurrent.futures import ThreadPoolExecutor

    output = _settings(ctx).output
    lab_dir = _lab_dir(ctx, directory)
    state = _require_lab(lab_dir)
    alive = {d.name: process_alive(d.pid, d.data_dir) for d in state.devices}

    def probe(device: LabDevice) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        if not alive[device.name]:
            return None, None
        health = check_health(device)
        group = failover_state(device, state.traffic_group) if state.traffic_group and health else None
        return health, group

    with ThreadPoolExecutor(max(1, min(8, len(state.devices)))) as pool:
        probes = list(pool.map(probe, state.devices))
    rows = []
    for device, (health, group) in zip(state.devices, probes, strict=True):
        running = alive[device.name]
        row = {
            "kind": "device", "name": device.name, "url": device.url, "pid": device.pid if running else None,
            "alive": running, "state": _process_state(running, device.killed, device.pid),
            "health": (health or {}).get("status", "not answering") if running else "-",
            "fingerprint": device.fingerprint, "data_dir": device.data_dir, "log": device.log,
        }
        if state.traffic_group:
            row |= _failover_fields(group, bool(running and health))
        rows.append(row)
    backend_rows = []
    for backend in state.backends:
        running = backend_alive(backend)
        backend_rows.append({
            "kind": "backend", "name": backend.name, "url": backend.url, "pid": backend.pid if running else None,
            "alive": running, "state": _process_state(running, backend.killed, backend.pid),
            "health": ("ok" if backend_answers(backend) else "not answering") if running else "-",
            "log": backend.log,
        })
    if output.json:
        output.print_json(rows + backend_rows)
        return
    columns = [*STATUS_COLUMNS, FAILOVER_COLUMN] if state.traffic_group else STATUS_COLUMNS
    output.records(rows, columns, title=f"lab in {lab_dir}")
    if backend_rows:
        output.records(backend_rows, BACKEND_COLUMNS, title=f"backends of pool {DEMO_POOL}")
    if state.vip:
        actives = [r["name"] for r in rows if r.get("failover") == "active"]
        address, port = split_host_port(state.vip, "vip")
        body = fetch(address, port, timeout=1.0)
        answer = body.split("\n", 1)[0] if body else "no answer"
        output.out.print(f"virtual server {DEMO_VIRTUAL} on http://{state.vip}/: active on "
                         f"{', '.join(actives) or 'no device'}; answers: {answer}", highlight=False)


NameArgument = Annotated[str, typer.Argument(
    metavar="NAME", help="A lab device (dev-2) or demo backend (backend-1).", show_default=False)]


@app.command()
def kill(ctx: typer.Context, device: NameArgument, directory: DirOption = None) -> None:
    """Kill one device (or backend) with SIGKILL, as a crash would, to watch failover. `lab start` brings it back."""
    output = _settings(ctx).output
    lab_dir = _lab_dir(ctx, directory)
    state = _require_lab(lab_dir)
    backend = state.backend(device)
    target: LabDevice | LabBackend = backend if backend is not None else _device(state, device)
    running = backend_alive(target) if isinstance(target, LabBackend) else process_alive(target.pid, target.data_dir)
    if not running:
        raise CliError(f"{target.name} is not running", target="NAME")
    assert target.pid is not None
    pid = target.pid
    send_signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + STOP_GRACE
    while (backend_alive(target) if isinstance(target, LabBackend)
           else process_alive(target.pid, target.data_dir)):
        if time.monotonic() >= deadline:
            raise CliError(f"{target.name} (pid {pid}) is still alive after SIGKILL")
        time.sleep(0.05)
    target.pid = None
    target.killed = True
    save_lab(state)
    output.done(f"killed {target.name} (pid {pid})", {"name": target.name, "pid": pid, "state": "killed"})
    if output.json:
        return
    if isinstance(target, LabBackend):
        output.note(f"monitor {DEMO_MONITOR} takes {target.name} out of pool {DEMO_POOL} within a second or two")
    elif state.traffic_group:
        others = [d.name for d in state.devices if d is not target and process_alive(d.pid, d.data_dir)]
        if others:
            output.note(f"if {target.name} was active, another device takes {state.traffic_group} over within "
                        f"a second or two: `{program()} failover status --device {others[0]}`")


@app.command()
def start(
    ctx: typer.Context,
    device: NameArgument,
    directory: DirOption = None,
    timeout: Annotated[float, typer.Option("--timeout", min=1.0, help="Seconds to wait for it to answer.")]
    = START_TIMEOUT,
) -> None:
    """Start a stopped lab device (or backend) again, with the same data directory, address and port.

    A device that comes back hears which device is active and stays standby (unless the traffic group
    fails back automatically).
    """
    output = _settings(ctx).output
    lab_dir = _lab_dir(ctx, directory)
    state = _require_lab(lab_dir)
    backend = state.backend(device)
    if backend is not None:
        _start_backend_again(output, state, backend)
        return
    target = _device(state, device)
    if process_alive(target.pid, target.data_dir):
        raise CliError(f"{target.name} is already running (pid {target.pid})", target="NAME")
    address, _, port = target.listen.rpartition(":")
    if port_in_use(address, int(port)):
        raise CliError(f"port {port} is already in use on {address}")
    try:
        start_devices(output, state, [target], timeout, f"starting {target.name}")
        target.killed = None
    finally:
        save_lab(state)
    row = next(r for r in _lab_rows(state) if r["name"] == target.name)
    group = _failover_after_start(target, state.traffic_group) if state.traffic_group else None
    if output.json:
        output.print_json(row | ({"failover": group} if state.traffic_group else {}))
        return
    output.records([row], LAB_COLUMNS)
    if group is not None:
        output.out.print(f"{target.name} is {_failover_cell(group)} for {state.traffic_group}; active device: "
                         f"{group.get('active_device') or 'none yet'}", highlight=False)


def _failover_after_start(device: LabDevice, traffic_group: str, wait: float = 5.0) -> dict[str, Any] | None:
    """The failover state of a device that just started, once it hears an active device (at most `wait` s)."""
    deadline = time.monotonic() + wait
    while True:
        group = failover_state(device, traffic_group)
        if (group is not None and group.get("active_device")) or time.monotonic() >= deadline:
            return group
        time.sleep(0.2)


def _start_backend_again(output: Output, state: LabState, backend: LabBackend) -> None:
    if backend_alive(backend):
        raise CliError(f"{backend.name} is already running (pid {backend.pid})", target="NAME")
    if backend.port and port_in_use(backend.address, backend.port):
        raise CliError(f"port {backend.port} is already in use on {backend.address}")
    start_backends(state, [backend])
    row = {"name": backend.name, "url": backend.url, "pid": backend.pid, "state": "running"}
    if output.json:
        output.print_json(row)
        return
    output.done(f"started {backend.name} at {backend.url} (pid {backend.pid})")
    output.note(f"monitor {DEMO_MONITOR} puts it back in pool {DEMO_POOL} within a second or two")

