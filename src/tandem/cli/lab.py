"""`tandem lab`: several devices on this host, one `tandem serve` process each.

Device `dev-i` listens on the i-th loopback address from `--address-base` (all of 127/8 is
local on Linux, so no privileges are needed), on the same port, with its own data directory
`DIR/dev-i` and log `DIR/dev-i/daemon.log`. The lab's state is `DIR/lab.json`.

With two devices or more, `lab up` also forms a cluster of them (unless --no-cluster): dev-1
trusts the others and creates device group `lab` (sync-failover up to 8 devices, sync-only
beyond), partition Common, and the command waits until every device sees it In Sync.

With a sync-failover cluster it also sets up something to curl and watch fail over (unless
--no-demo): two HTTP backends `backend-1` and `backend-2` (`python -m tandem.cli.labbackend`,
detached processes on 127.0.0.1, free ports, directory `DIR/backend-i`), traffic group
`traffic-group-1` (HA order dev-1..dev-N), an http monitor, pool `web` of the two backends and
virtual server `www` on a floating loopback address (`--vip`, default the address base + 99,
port 8080: 127.0.10.100:8080), and waits until the virtual server answers.
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
from tandem.cli.labstate import LabBackend, LabDevice, LabState, default_lab_dir, load_lab, remove_lab, save_lab
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

# The demo a sync-failover lab gets: backends, a traffic group, a monitor, a pool, a virtual server.
DEMO_TRAFFIC_GROUP = "traffic-group-1"
DEMO_MONITOR = "web-http"
DEMO_POOL = "web"
DEMO_VIRTUAL = "www"
DEMO_BACKENDS = ("backend-1", "backend-2")
BACKEND_ADDRESS = "127.0.0.1"
BACKEND_MODULE = "tandem.cli.labbackend"
BACKEND_LOG = "backend.log"
BACKEND_PORT_FILE = "port"
VIP_OFFSET = 99
"""The demo virtual server's address is the lab's address base + 99 (127.0.10.100), unless --vip."""
VIP_PORT = 8080
DEMO_TIMEOUT = 30.0
IN_SYNC = "In Sync"

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


# -- processes ----------------------------------------------------------------------------------

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


# -- demo backends ------------------------------------------------------------------------------

def backend_alive(backend: LabBackend) -> bool:
    """Whether the backend's recorded pid is a live `tandem.cli.labbackend` process of this lab."""
    return process_alive(backend.pid, backend.port_file, marker=BACKEND_MODULE)


def fetch(address: str, port: int, timeout: float = 1.0) -> str | None:
    """The body of `GET /` on address:port when it answers 200 within `timeout`, else None."""
    import http.client

    connection = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        connection.request("GET", "/", headers={"User-Agent": "tandem-lab"})
        response = connection.getresponse()
        body = response.read().decode(errors="replace")
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()
    return body if response.status == 200 else None


def backend_answers(backend: LabBackend, timeout: float = 1.0) -> bool:
    body = fetch(backend.address, backend.port, timeout) if backend.port else None
    return body is not None and body.split("\n", 1)[0] == backend.name


def spawn_backend(backend: LabBackend) -> subprocess.Popen[bytes]:
    """Start a demo backend as a detached process, on its recorded port (0: a free one)."""
    directory = Path(backend.dir)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    Path(backend.port_file).unlink(missing_ok=True)
    host = f"[{backend.address}]" if ":" in backend.address else backend.address
    with open(backend.log, "ab") as log:
        stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        log.write(f"--- tandem lab: starting {backend.name} at {stamp}\n".encode())
        log.flush()
        return subprocess.Popen(
            [sys.executable, "-m", BACKEND_MODULE, "--name", backend.name, "--listen", f"{host}:{backend.port}",
             "--port-file", backend.port_file],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True, env=_child_env(), cwd=directory,
        )


def start_backends(state: LabState, backends: list[LabBackend], timeout: float = 10.0) -> None:
    """Start `backends`, record their pids and ports, wait until each answers; CliError (after stopping
    them) when one does not."""
    procs: dict[str, subprocess.Popen[bytes]] = {}
    failed: tuple[LabBackend, str] | None = None
    for backend in backends:
        backend.killed = None
        try:
            procs[backend.name] = spawn_backend(backend)
        except OSError as exc:
            failed = (backend, f"cannot start {backend.name}: {exc}")
            break
        backend.pid = procs[backend.name].pid
    save_lab(state)
    deadline = time.monotonic() + timeout
    pending = [] if failed else list(backends)
    while pending and failed is None:
        for backend in list(pending):
            code = procs[backend.name].poll()
            if code is not None:
                failed = (backend, f"{backend.name} exited with status {code}")
                break
            try:
                backend.port = int(Path(backend.port_file).read_text().strip())
            except (OSError, ValueError):
                continue
            if backend_answers(backend):
                pending.remove(backend)
        if pending and failed is None:
            if time.monotonic() >= deadline:
                failed = (pending[0], f"{pending[0].name} did not answer within {timeout:g} s")
                break
            time.sleep(0.05)
    if failed is None:
        save_lab(state)
        return
    stop_backends(backends)
    for proc in procs.values():
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=1)
    for backend in backends:
        backend.pid = None
    save_lab(state)
    backend, reason = failed
    tail = log_tail(Path(backend.log))
    sys.stderr.write(f"--- last lines of {backend.log}:\n{tail}\n---\n")
    raise CliError(f"{reason} (log: {backend.log})", target=backend.name, code="lab_start_failed")


def stop_backends(backends: Iterable[LabBackend], grace: float = STOP_GRACE) -> dict[str, str]:
    """SIGTERM the live backends, SIGKILL those still alive after `grace` seconds; how each ended."""
    backends = list(backends)
    outcome = {b.name: "not running" for b in backends}
    alive = [b for b in backends if backend_alive(b)]
    for backend in alive:
        assert backend.pid is not None
        _signal(backend.pid, signal.SIGTERM)
        outcome[backend.name] = "stopped"

    def wait(group: list[LabBackend]) -> list[LabBackend]:
        deadline = time.monotonic() + grace
        while True:
            left = [b for b in group if backend_alive(b)]
            if not left or time.monotonic() >= deadline:
                return left
            time.sleep(0.05)

    for backend in wait(alive):
        assert backend.pid is not None
        _signal(backend.pid, signal.SIGKILL)
        outcome[backend.name] = "killed"
    for backend in backends:
        if backend_alive(backend):
            outcome[backend.name] = "still running"
    return outcome


# -- the demo: a virtual server to curl and watch fail over ---------------------------------------

def split_host_port(text: str, option: str) -> tuple[str, int]:
    """`ADDRESS:PORT` (IPv6 as `[ADDRESS]:PORT`) → (address, port); CliError naming `option` otherwise."""
    host, sep, port = text.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise CliError(f"{text!r} is not ADDRESS:PORT", target=option)
    return host, int(port)


def host_port(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def default_vip(address_base: str) -> str:
    """The demo virtual server's default destination: the address base + 99, port 8080."""
    try:
        address = ipaddress.ip_address(address_base) + VIP_OFFSET
    except (ValueError, ipaddress.AddressValueError):
        raise CliError(f"no default virtual server address from {address_base}: give --vip",
                       target="--vip") from None
    if not address.is_loopback:
        raise CliError(f"{address_base} + {VIP_OFFSET} leaves the loopback range: give --vip ADDRESS:PORT",
                       target="--vip")
    return host_port(str(address), VIP_PORT)


def check_vip(vip: str, devices: list[str], port: int) -> tuple[str, int]:
    """The demo destination, checked: a loopback address (the lab's address provider floats those only),
    not a device's management or peer port, nothing listening on it yet."""
    address, vip_port = split_host_port(vip, "--vip")
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        raise CliError(f"{address!r} is not an IP address", target="--vip") from None
    if not parsed.is_loopback:
        raise CliError(f"{address} is not a loopback address: lab devices float loopback addresses only",
                       target="--vip")
    if str(parsed) in devices and vip_port in (port, port + PEER_PORT_OFFSET):
        raise CliError(f"{vip} is a device's management or peer address", target="--vip")
    if port_in_use(str(parsed), vip_port):
        raise CliError(f"{vip} is already in use (another lab?): give another --vip ADDRESS:PORT", target="--vip")
    return str(parsed), vip_port


def _ensure(resource: Any, fields: dict[str, Any], connection: Any) -> Any:
    """Create `resource`; when it exists already (a lab started again on the same data), change it to `fields`."""
    from tandem.sdk import TandemError

    try:
        return resource.post(connection=connection)
    except TandemError as exc:
        if exc.status_code != 409:
            raise
    resource.get(connection=connection)
    for key, value in fields.items():
        setattr(resource, key, value)
    return resource.patch(connection=connection)


def setup_demo(output: Output, state: LabState, vip: tuple[str, int], timeout: float) -> dict[str, Any]:
    """Start the backends, create the traffic group, monitor, pool and virtual server on dev-1, wait until
    the virtual server answers; what was set up. CliError (devices and backends left up) on failure."""
    from tandem.sdk import Client, Failover, Monitor, Pool, TandemError, TrafficGroup, VirtualServer

    lab_dir = Path(state.dir)
    say = (lambda _line: None) if output.json else output.note
    state.backends = [
        LabBackend(name=name, address=BACKEND_ADDRESS, port=0, pid=None, dir=str(lab_dir / name),
                   log=str(lab_dir / name / BACKEND_LOG), port_file=str(lab_dir / name / BACKEND_PORT_FILE))
        for name in DEMO_BACKENDS
    ]
    address, port = vip
    names = [d.name for d in state.devices]
    clients: list[Client] = []
    deadline = time.monotonic() + timeout
    try:
        start_backends(state, state.backends)
        for backend in state.backends:
            say(f"{backend.name} is up at {backend.url}")
        for device in state.devices:
            password = read_password_file(Path(device.password_file), option="lab admin password file")
            clients.append(Client(device.url, "admin", password, fingerprint=device.fingerprint))
        root = clients[0]
        say(f"creating traffic group {DEMO_TRAFFIC_GROUP} (HA order {', '.join(names)})")
        group_fields = {"device_group": LAB_GROUP, "ha_order": names}
        _ensure(TrafficGroup(name=DEMO_TRAFFIC_GROUP, **group_fields), group_fields, root)
        # every device must know the traffic group before the virtual server reaches it (a device
        # serves a virtual server whose traffic group it does not know)
        active_device = None
        for client, name in zip(clients, names, strict=True):
            heard = Failover(client).wait_active(DEMO_TRAFFIC_GROUP, timeout=max(1.0, deadline - time.monotonic()))
            active_device = active_device or heard["active_device"]
            say(f"{name} hears {heard['active_device']} active for {DEMO_TRAFFIC_GROUP}")
        monitor = {"type": "http", "interval": 1.0, "timeout": 1.0, "path": "/", "expected_status": 200}
        _ensure(Monitor(name=DEMO_MONITOR, **monitor), monitor, root)
        members = [{"address": b.address, "port": b.port} for b in state.backends]
        pool = {"lb_method": "round-robin", "monitor": DEMO_MONITOR, "members": members}
        say(f"creating pool {DEMO_POOL} ({', '.join(host_port(b.address, b.port) for b in state.backends)}) "
            f"and virtual server {DEMO_VIRTUAL} on {host_port(address, port)}")
        _ensure(Pool(name=DEMO_POOL, **pool), pool, root)
        virtual = {"address": address, "port": port, "pool": DEMO_POOL, "traffic_group": DEMO_TRAFFIC_GROUP,
                   "enabled": True}
        _ensure(VirtualServer(name=DEMO_VIRTUAL, **virtual), virtual, root)
    except (TandemError, CliError) as exc:
        message = getattr(exc, "message", str(exc))
        raise CliError(f"the devices are up, but setting up the virtual server failed: {message} "
                       "(`tandem lab down` stops the lab)", target=getattr(exc, "target", None),
                       code=getattr(exc, "code", "lab_demo_failed")) from None
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                client.close()
    state.traffic_group = DEMO_TRAFFIC_GROUP
    state.vip = host_port(address, port)
    save_lab(state)
    answer = None
    while answer is None:
        body = fetch(address, port, timeout=1.0)
        if body is not None and body.split("\n", 1)[0] in DEMO_BACKENDS:
            answer = body.split("\n", 1)[0]
        elif time.monotonic() >= deadline:
            raise CliError(f"the lab is up, but virtual server {DEMO_VIRTUAL} does not answer on "
                           f"http://{state.vip}/ after {timeout:g} s (see `tandem failover status` and "
                           "`tandem lab down`)", code="lab_demo_failed")
        else:
            time.sleep(0.1)
    say(f"http://{state.vip}/ answers ({answer})")
    return {"vip": state.vip, "url": f"http://{state.vip}/", "traffic_group": DEMO_TRAFFIC_GROUP,
            "active_device": active_device, "virtual_server": DEMO_VIRTUAL, "pool": DEMO_POOL, "monitor": DEMO_MONITOR,
            "backends": [{"name": b.name, "url": b.url, "pid": b.pid} for b in state.backends]}


def program() -> str:
    """How a person runs this CLI: `tandem` when that is on PATH, else the path of the venv's script."""
    script = Path(sys.executable).parent / "tandem"
    found = shutil.which("tandem")
    if found and script.exists() and Path(found).resolve() == script.resolve():
        return "tandem"
    if script.exists():
        with contextlib.suppress(ValueError):
            return str(script.absolute().relative_to(Path.cwd()))
        return str(script)
    return "tandem"


def demo_hints(state: LabState, lab_dir: Path) -> list[str]:
    """The commands that show a failover in this lab, for people."""
    tandem = program()
    if lab_dir.absolute() != default_lab_dir().absolute():
        tandem += f" --lab-dir {lab_dir}"
    first, second = state.devices[0].name, state.devices[1].name
    lines = [
        (f"curl http://{state.vip}/", f"{' or '.join(DEMO_BACKENDS)}, through the active device"),
        (f"{tandem} failover status", f"{first} is active for {state.traffic_group}"),
        (f"{tandem} lab kill {first}", "crash the active device"),
        (f"curl http://{state.vip}/", f"answers again within a second or two: {second} took over"),
        (f"{tandem} failover status --device {second}", f"{second} is active"),
        (f"{tandem} lab start {first}", "back, as standby"),
    ]
    width = max(len(command) for command, _ in lines)
    return [f"{command:<{width}}  # {comment}" for command, comment in lines]


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
        output.out.print(f"device group {LAB_GROUP} ({group_status.get('type')}, partition {LAB_PARTITION}): "
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
                                             device_group_type=group_type, device_group_partition=LAB_PARTITION)
            return _wait_in_sync(clients, [d.name for d in state.devices], timeout)
        if not output.json:
            output.note(f"forming cluster {LAB_GROUP} ({group_type}) of {len(clients)} devices")
        ClusterManager().create(devices=clients, device_group_name=LAB_GROUP, device_group_type=group_type,
                                device_group_partition=LAB_PARTITION, timeout=timeout,
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
    _signal(pid, signal.SIGKILL)
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
        _start(output, state, [target], timeout, f"starting {target.name}")
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
