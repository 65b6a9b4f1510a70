"""`tandem lab`: several devices on this host, one `tandem serve` process each.

Device `dev-i` listens on the i-th loopback address from `--address-base` (all of 127/8 is
local on Linux, so no privileges are needed), on the same port, with its own data directory
`DIR/dev-i` and log `DIR/dev-i/daemon.log`. The lab's state is `DIR/lab.json`.

With two devices or more, `lab up` also forms a cluster of them (unless --no-cluster): dev-1
trusts the others and creates device group `lab` (sync-failover up to 8 devices, sync-only
beyond), partition Common, and the command waits until every device sees it In Sync.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from tandem.cli.connection import Settings, read_password_file
from tandem.cli.errors import CliError
from tandem.cli.labstate import LabDevice, LabState, default_lab_dir, load_lab, remove_lab, save_lab
from tandem.cli.output import Column, Output
from tandem.trust.identity import fingerprint_of

app = typer.Typer(
    help="A local lab: several devices on this host, each on its own loopback address (127.0.10.1, "
         "127.0.10.2, ...) with its own data directory. Other commands use it when no --url is given.",
    no_args_is_help=True,
)

DEFAULT_DEVICES = 2
DEFAULT_ADDRESS_BASE = "127.0.10.1"
DEFAULT_PORT = 8443
PEER_PORT_OFFSET = 1
"""A device's peer channel listens on its management port + 1 unless told otherwise (docs/clustering.md)."""
LAB_GROUP = "lab"
LAB_PARTITION = "Common"
MAX_SYNC_FAILOVER = 8
MAX_SYNC_ONLY = 32
CLUSTER_TIMEOUT = 60.0
START_TIMEOUT = 30.0
STOP_GRACE = 5.0
PASSWORD_FILE = "admin-password"
CERT_FILE = Path("identity") / "cert.pem"
LOG_FILE = "daemon.log"
LOG_TAIL_LINES = 25
# Variables a device must not inherit from the shell that starts the lab: each lab device
# generates its own admin password into DATA_DIR/admin-password.
SCRUBBED_ENV = ("TANDEM_ADMIN_PASSWORD", "TANDEM_PASSWORD", "TANDEM_URL", "TANDEM_FINGERPRINT")

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

DirOption = Annotated[Path | None, typer.Option(
    "--dir", file_okay=False, show_default=False,
    help="The lab directory. [default: --lab-dir, TANDEM_LAB_DIR or /tmp/tandem-lab]",
)]


# -- processes ----------------------------------------------------------------------------------

def _proc_available() -> bool:
    return Path("/proc/self/stat").exists()


def process_alive(pid: int | None, data_dir: str | None = None) -> bool:
    """Whether `pid` is a live (not zombie) `tandem serve` process for `data_dir`.

    The command-line check guards against a recycled pid: a lab only ever signals its own devices.
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
        if "serve" not in args:
            return False
        return data_dir is None or data_dir in args
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal(pid: int, sig: int) -> None:
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
        _signal(device.pid, signal.SIGTERM)
        outcome[device.name] = "stopped"
    stubborn = _wait_gone(alive, time.monotonic() + grace, reap)
    for device in stubborn:
        assert device.pid is not None
        _signal(device.pid, signal.SIGKILL)
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
    """`count` consecutive loopback addresses from `address_base`; CliError if they are not loopback."""
    try:
        base = ipaddress.ip_address(address_base)
    except ValueError:
        raise CliError(f"{address_base!r} is not an IP address", target="--address-base") from None
    if not isinstance(base, ipaddress.IPv4Address):
        raise CliError("the lab uses IPv4 loopback addresses (127.0.0.0/8)", target="--address-base")
    addresses = []
    for i in range(count):
        try:
            address = base + i
        except ipaddress.AddressValueError:
            address = None
        if address is None or not address.is_loopback:
            raise CliError(f"{count} devices from {address_base} leave the loopback range 127.0.0.0/8",
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


def _child_env() -> dict[str, str]:
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
             "--listen", device.listen],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True, env=_child_env(), cwd=data_dir,
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
                    device.fingerprint = fingerprint_of(cert.read_bytes())
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


def _progress(output: Output) -> Progress:
    return Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=output.err, transient=True, disable=not output.err.is_terminal,
    )


def _start(output: Output, state: LabState, devices: list[LabDevice], timeout: float, what: str) -> None:
    """Spawn `devices`, record their pids, wait until healthy; on failure stop them and raise CliError."""
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
        raise CliError(f"{exc.reason}; stopped what was started (log: {failed.log})",  # type: ignore[union-attr]
                       target=failed.name, code="lab_start_failed") from None


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
) -> None:
    """Start a lab of --devices devices dev-1..dev-N and wait until each one answers.

    With 2 devices or more, also forms a cluster of them: device group `lab` (sync-failover up to 8
    devices, sync-only beyond, partition Common), waited for until In Sync; --no-cluster skips it.
    Prints each device's management URL, certificate fingerprint and admin password file, and the group.
    """
    output = _settings(ctx).output
    cluster = devices >= 2 and not no_cluster
    if cluster and devices > MAX_SYNC_ONLY:
        raise CliError(f"a device group holds at most {MAX_SYNC_ONLY} devices: start at most {MAX_SYNC_ONLY} "
                       "or use --no-cluster", target="--devices")
    lab_dir = _lab_dir(ctx, directory)
    try:
        existing = load_lab(lab_dir)
    except ValueError as exc:
        raise CliError(f"{exc}; remove it or use another --dir") from None
    if existing is not None:
        running = [d for d in existing.devices if process_alive(d.pid, d.data_dir)]
        if running:
            names = ", ".join(f"{d.name} (pid {d.pid})" for d in running)
            raise CliError(f"a lab is already up in {lab_dir}: {names}; stop it with `tandem lab down`",
                           target="--dir", code="lab_exists")
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
        _start(output, state, state.devices, timeout, f"starting {devices} device(s)")
    except (CliError, KeyboardInterrupt):
        remove_lab(lab_dir)
        raise
    save_lab(state)
    group_status = None
    if cluster:
        group_status = form_cluster(output, state, cluster_timeout)
        state.device_group = LAB_GROUP
        save_lab(state)
    if output.json:
        output.print_json({**state.to_dict(), "cluster": group_status})
        return
    output.records(_lab_rows(state), LAB_COLUMNS, title=f"lab in {lab_dir}")
    missing = [d.password_file for d in state.devices if not Path(d.password_file).exists()]
    if missing:
        output.note(f"note: no generated admin password file at {', '.join(missing)}")
    if group_status is not None:
        from tandem.cli.cluster import show_status

        output.out.print()
        output.out.print(f"device group {LAB_GROUP} ({group_status.get('type')}, partition {LAB_PARTITION}): "
                         f"{group_status.get('status')}", style="bold", highlight=False)
        show_status(output, group_status, group=False)


def lab_group_type(count: int) -> str:
    """The type of the lab's device group for `count` devices: sync-failover while it may be, else sync-only."""
    return "sync-failover" if count <= MAX_SYNC_FAILOVER else "sync-only"


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
        if not output.json:
            output.note(f"forming cluster {LAB_GROUP} ({group_type}) of {len(clients)} devices")
        ClusterManager().create(devices=clients, device_group_name=LAB_GROUP, device_group_type=group_type,
                                device_group_partition=LAB_PARTITION, timeout=timeout,
                                progress=None if output.json else output.note)
        return DeviceGroup(name=LAB_GROUP).status(connection=clients[0])
    except (TandemError, CliError) as exc:
        message = getattr(exc, "message", str(exc))
        raise CliError(f"the devices are up, but forming cluster {LAB_GROUP} failed: {message} "
                       "(`tandem lab down` stops them)", target=getattr(exc, "target", None),
                       code=getattr(exc, "code", "cluster_failed")) from None
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                client.close()


@app.command()
def down(
    ctx: typer.Context,
    directory: DirOption = None,
    purge: Annotated[bool, typer.Option("--purge", help="Also remove the devices' data directories.")] = False,
) -> None:
    """Stop every device of the lab (SIGTERM, then SIGKILL after 5 s) and forget the lab.

    Data directories are kept, unless --purge.
    """
    output = _settings(ctx).output
    lab_dir = _lab_dir(ctx, directory)
    state = _require_lab(lab_dir)
    outcome = stop_devices(state.devices)
    left = [name for name, how in outcome.items() if how == "still running"]
    if left:
        raise CliError(f"could not stop {', '.join(left)}")
    remove_lab(lab_dir)
    purged: list[str] = []
    if purge:
        for device in state.devices:
            data_dir = Path(device.data_dir)
            if data_dir.is_dir() and data_dir.resolve().is_relative_to(lab_dir.resolve()):
                shutil.rmtree(data_dir, ignore_errors=True)
                purged.append(str(data_dir))
        with contextlib.suppress(OSError):
            lab_dir.rmdir()  # only when nothing else lives there
    if output.json:
        output.print_json({"dir": str(lab_dir), "devices": outcome, "purged": purged})
        return
    for name, how in outcome.items():
        output.out.print(f"{name}: {how}")
    output.done(f"lab in {lab_dir} is down" + (" and its data removed" if purge else ""))


@app.command()
def status(ctx: typer.Context, directory: DirOption = None) -> None:
    """Show each lab device: URL, pid, whether its process is alive and whether it answers /api/health."""
    output = _settings(ctx).output
    lab_dir = _lab_dir(ctx, directory)
    state = _require_lab(lab_dir)
    rows = []
    for device in state.devices:
        alive = process_alive(device.pid, device.data_dir)
        health = check_health(device) if alive else None
        rows.append({
            "name": device.name, "url": device.url, "pid": device.pid if alive else None,
            "alive": alive, "state": "running" if alive else "stopped",
            "health": (health or {}).get("status", "not answering") if alive else "-",
            "fingerprint": device.fingerprint, "data_dir": device.data_dir, "log": device.log,
        })
    output.records(rows, STATUS_COLUMNS, title=f"lab in {lab_dir}")


@app.command()
def kill(
    ctx: typer.Context,
    device: Annotated[str, typer.Argument(metavar="DEVICE", help="The device to kill, e.g. dev-2.")],
    directory: DirOption = None,
) -> None:
    """Kill one device with SIGKILL, as a crash would (to watch failover). `tandem lab start` brings it back."""
    output = _settings(ctx).output
    lab_dir = _lab_dir(ctx, directory)
    state = _require_lab(lab_dir)
    target = _device(state, device)
    if not process_alive(target.pid, target.data_dir):
        raise CliError(f"{target.name} is not running", target="DEVICE")
    assert target.pid is not None
    pid = target.pid
    _signal(pid, signal.SIGKILL)
    if _wait_gone([target], time.monotonic() + STOP_GRACE):
        raise CliError(f"{target.name} (pid {pid}) is still alive after SIGKILL")
    target.pid = None
    save_lab(state)
    output.done(f"killed {target.name} (pid {pid})", {"name": target.name, "pid": pid, "state": "killed"})


@app.command()
def start(
    ctx: typer.Context,
    device: Annotated[str, typer.Argument(metavar="DEVICE", help="The stopped device to start, e.g. dev-2.")],
    directory: DirOption = None,
    timeout: Annotated[float, typer.Option("--timeout", min=1.0, help="Seconds to wait for it to answer.")]
    = START_TIMEOUT,
) -> None:
    """Start a stopped lab device again, with the same data directory and address."""
    output = _settings(ctx).output
    lab_dir = _lab_dir(ctx, directory)
    state = _require_lab(lab_dir)
    target = _device(state, device)
    if process_alive(target.pid, target.data_dir):
        raise CliError(f"{target.name} is already running (pid {target.pid})", target="DEVICE")
    address, _, port = target.listen.rpartition(":")
    if port_in_use(address, int(port)):
        raise CliError(f"port {port} is already in use on {address}")
    try:
        _start(output, state, [target], timeout, f"starting {target.name}")
    finally:
        save_lab(state)
    row = next(r for r in _lab_rows(state) if r["name"] == target.name)
    if output.json:
        output.print_json(row)
        return
    output.records([row], LAB_COLUMNS)
