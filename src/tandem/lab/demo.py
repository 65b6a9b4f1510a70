"""The lab's demo: backends, and a virtual server on a floating address to curl and watch fail over."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from tandem.lab.errors import LabError, Reporter
from tandem.lab.l7 import (
    CA_FILE,
    CERTIFICATE,
    HOST_POOLS,
    HTTP_VIRTUAL,
    HTTPS_VIRTUAL,
    L7_ENGINE,
    client_context,
    l7_objects,
    l7_ports,
    make_tls,
)
from tandem.lab.processes import child_env, log_tail, port_in_use, process_alive, send_signal
from tandem.lab.secrets import ADMIN_USER, read_password_file
from tandem.lab.state import LabBackend, LabState, default_lab_dir, save_lab
from tandem.models.fields import host_port
from tandem.models.resources import DEFAULT_TRAFFIC_GROUP

PEER_PORT_OFFSET = 1
LAB_GROUP = "lab"
STOP_GRACE = 5.0
DEMO_TRAFFIC_GROUP = DEFAULT_TRAFFIC_GROUP
DEMO_MONITOR = "web-http"
DEMO_POOL = "web"
DEMO_VIRTUAL = "www"
DEMO_BACKENDS = ("backend-1", "backend-2")
BACKEND_ADDRESS = "127.0.0.1"
BACKEND_MODULE = "tandem.lab.backends"
BACKEND_LOG = "backend.log"
BACKEND_PORT_FILE = "port"
VIP_OFFSET = 99
VIP_PORT = 8080

def backend_alive(backend: LabBackend) -> bool:
    """Whether the backend's recorded pid is a live `tandem.lab.backends` process of this lab."""
    return process_alive(backend.pid, backend.port_file, marker=BACKEND_MODULE)


def fetch(address: str, port: int, timeout: float = 1.0, host: str | None = None,
          context: ssl.SSLContext | None = None) -> str | None:
    """The body of `GET /` on address:port (with header `Host: host` when given; over TLS with `context`
    when given) when it answers 200 within `timeout`, else None."""
    import http.client

    connection = (http.client.HTTPSConnection(address, port, timeout=timeout, context=context) if context
                  else http.client.HTTPConnection(address, port, timeout=timeout))
    headers = {"User-Agent": "tandem-lab"} | ({"Host": host} if host else {})
    try:
        connection.request("GET", "/", headers=headers)
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
            start_new_session=True, close_fds=True, env=child_env(), cwd=directory,
        )


def start_backends(state: LabState, backends: list[LabBackend], timeout: float = 10.0) -> None:
    """Start `backends`, record their pids and ports, wait until each answers; LabError (after stopping
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
    raise LabError(f"{reason} (log: {backend.log})", target=backend.name, code="lab_start_failed")


def stop_backends(backends: Iterable[LabBackend], grace: float = STOP_GRACE) -> dict[str, str]:
    """SIGTERM the live backends, SIGKILL those still alive after `grace` seconds; how each ended."""
    backends = list(backends)
    outcome = {b.name: "not running" for b in backends}
    alive = [b for b in backends if backend_alive(b)]
    for backend in alive:
        assert backend.pid is not None
        send_signal(backend.pid, signal.SIGTERM)
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
        send_signal(backend.pid, signal.SIGKILL)
        outcome[backend.name] = "killed"
    for backend in backends:
        if backend_alive(backend):
            outcome[backend.name] = "still running"
    return outcome


# -- the demo: a virtual server to curl and watch fail over ---------------------------------------

def split_host_port(text: str, option: str) -> tuple[str, int]:
    """`ADDRESS:PORT` (IPv6 as `[ADDRESS]:PORT`) → (address, port); LabError naming `option` otherwise."""
    host, sep, port = text.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise LabError(f"{text!r} is not ADDRESS:PORT", target=option)
    return host, int(port)


def default_vip(address_base: str) -> str:
    """The demo virtual server's default destination: the address base + 99, port 8080."""
    try:
        address = ipaddress.ip_address(address_base) + VIP_OFFSET
    except (ValueError, ipaddress.AddressValueError):
        raise LabError(f"no default virtual server address from {address_base}: give --vip",
                       target="--vip") from None
    if not address.is_loopback:
        raise LabError(f"{address_base} + {VIP_OFFSET} leaves the loopback range: give --vip ADDRESS:PORT",
                       target="--vip")
    return host_port(str(address), VIP_PORT)


def check_vip(vip: str, devices: list[str], port: int) -> tuple[str, int]:
    """The demo destination, checked: a loopback address (the lab's address provider floats those only),
    not a device's management or peer port, nothing listening on it nor on the HTTP and HTTPS virtual
    servers' ports after it."""
    address, vip_port = split_host_port(vip, "--vip")
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        raise LabError(f"{address!r} is not an IP address", target="--vip") from None
    if not parsed.is_loopback:
        raise LabError(f"{address} is not a loopback address: lab devices float loopback addresses only",
                       target="--vip")
    ports = (vip_port, *l7_ports(vip_port))
    if ports[-1] > 65535:
        raise LabError(f"{vip}: the HTTP and HTTPS virtual servers take the next two ports: give a lower port",
                       target="--vip")
    if str(parsed) in devices and {port, port + PEER_PORT_OFFSET} & set(ports):
        raise LabError(f"{vip} (or one of the next two ports) is a device's management or peer address",
                       target="--vip")
    busy = [host_port(str(parsed), p) for p in ports if port_in_use(str(parsed), p)]
    if busy:
        raise LabError(f"{', '.join(busy)} already in use (another lab?): give another --vip ADDRESS:PORT",
                       target="--vip")
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


def setup_demo(output: Reporter, state: LabState, vip: tuple[str, int], timeout: float) -> dict[str, Any]:
    """Start the backends, create the traffic group, monitor, pool and virtual server on dev-1, wait until
    the virtual server answers; what was set up. LabError (devices and backends left up) on failure."""
    from tandem.sdk import Client, TandemError

    say: Callable[[str], None] = (lambda _line: None) if output.json else output.note
    state.backends = _demo_backends(Path(state.dir))
    address, port = vip
    clients: list[Client] = []
    deadline = time.monotonic() + timeout
    try:
        start_backends(state, state.backends)
        for backend in state.backends:
            say(f"{backend.name} is up at {backend.url}")
        for device in state.devices:
            password = read_password_file(Path(device.password_file), option="lab admin password file")
            clients.append(Client(device.url, ADMIN_USER, password, fingerprint=device.fingerprint))
        active_device = _configure_demo(say, state, clients, vip, deadline)
        l7_served = _configure_l7(say, state, clients, vip)
    except (TandemError, LabError) as exc:
        message = getattr(exc, "message", str(exc))
        raise LabError(f"the devices are up, but setting up the virtual server failed: {message} "
                       "(`tandem lab down` stops the lab)", target=getattr(exc, "target", None),
                       code=getattr(exc, "code", "lab_demo_failed")) from None
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                client.close()
    state.traffic_group = DEMO_TRAFFIC_GROUP
    state.vip = host_port(address, port)
    save_lab(state)
    answer = _wait_answer(state, vip, deadline, timeout)
    say(f"http://{state.vip}/ answers ({answer})")
    l7 = l7_urls(state) | {"served": l7_served}
    if l7_served:
        _wait_l7(say, state, vip, deadline, timeout)
    return {"vip": state.vip, "url": f"http://{state.vip}/", "traffic_group": DEMO_TRAFFIC_GROUP,
            "active_device": active_device, "virtual_server": DEMO_VIRTUAL, "pool": DEMO_POOL, "monitor": DEMO_MONITOR,
            "backends": [{"name": b.name, "url": b.url, "pid": b.pid} for b in state.backends], "l7": l7}


def _demo_backends(lab_dir: Path) -> list[LabBackend]:
    return [
        LabBackend(name=name, address=BACKEND_ADDRESS, port=0, pid=None, dir=str(lab_dir / name),
                   log=str(lab_dir / name / BACKEND_LOG), port_file=str(lab_dir / name / BACKEND_PORT_FILE))
        for name in DEMO_BACKENDS
    ]


def _configure_demo(say: Callable[[str], None], state: LabState, clients: list[Any], vip: tuple[str, int],
                    deadline: float) -> str | None:
    """Create the traffic group, monitor, pool and virtual server on dev-1 (the first client); the device
    every device hears active for the traffic group."""
    from tandem.sdk import Failover, Monitor, Pool, TrafficGroup, VirtualServer

    address, port = vip
    names = [d.name for d in state.devices]
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
    return active_device


def _configure_l7(say: Callable[[str], None], state: LabState, clients: list[Any], vip: tuple[str, int]) -> bool:
    """Make the lab CA (written to `DIR/lab-ca.pem`) and its certificate, create the L7 demo's pools and
    virtual servers on dev-1; whether every device's engine serves them."""
    address, port = vip
    tls = make_tls(address)
    (Path(state.dir) / CA_FILE).write_text(tls.ca)
    backends = {b.name: (b.address, b.port) for b in state.backends}
    urls = l7_urls(state, vip)
    say(f"creating virtual servers {HTTP_VIRTUAL} ({urls['http']}, host rules "
        + ", ".join(f"{host} → pool {pool}" for host, (pool, _backend) in HOST_POOLS.items())
        + f") and {HTTPS_VIRTUAL} ({urls['https']}, certificate signed by {urls['ca']})")
    for resource, fields in l7_objects(address, port, backends, DEMO_POOL, DEMO_TRAFFIC_GROUP, tls):
        _ensure(resource, fields, clients[0])
    return all(client.device()["engine"]["name"] == L7_ENGINE for client in clients)


def l7_urls(state: LabState, vip: tuple[str, int] | None = None) -> dict[str, str]:
    """The URLs of the L7 demo's virtual servers (on `vip`, else the lab's), and the lab CA's file."""
    address, port = vip or split_host_port(state.vip or "", "vip")
    http_port, https_port = l7_ports(port)
    return {"http": f"http://{host_port(address, http_port)}/", "https": f"https://{host_port(address, https_port)}/",
            "ca": str(Path(state.dir) / CA_FILE)}


def _wait_l7(say: Callable[[str], None], state: LabState, vip: tuple[str, int], deadline: float,
             timeout: float) -> None:
    """Wait until each host rule routes to its backend over HTTP and HTTPS (verified with the lab CA)."""
    address, port = vip
    context = client_context(Path(state.dir) / CA_FILE)
    urls = l7_urls(state, vip)
    http_port, https_port = l7_ports(port)
    for host, (_pool, backend) in HOST_POOLS.items():
        for scheme, virtual_port, tls in (("http", http_port, None), ("https", https_port, context)):
            while (body := fetch(address, virtual_port, 1.0, host, tls)) is None or body.split("\n", 1)[0] != backend:
                if time.monotonic() >= deadline:
                    raise LabError(f"the lab is up, but {urls[scheme]} does not answer for host {host} with "
                                   f"{backend} after {timeout:g} s (see `tandem virtual stats` and "
                                   "`tandem lab down`)", code="lab_demo_failed")
                time.sleep(0.05)
            say(f"{urls[scheme]} for host {host} answers ({backend})")


def _wait_answer(state: LabState, vip: tuple[str, int], deadline: float, timeout: float) -> str:
    """Wait until the virtual server answers with a backend's name (until `deadline`); that name."""
    address, port = vip
    while True:
        body = fetch(address, port, timeout=1.0)
        if body is not None and body.split("\n", 1)[0] in DEMO_BACKENDS:
            return body.split("\n", 1)[0]
        if time.monotonic() >= deadline:
            raise LabError(f"the lab is up, but virtual server {DEMO_VIRTUAL} does not answer on "
                           f"http://{state.vip}/ after {timeout:g} s (see `tandem failover status` and "
                           "`tandem lab down`)", code="lab_demo_failed")
        time.sleep(0.1)


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


def demo_hints(state: LabState, lab_dir: Path, l7_served: bool = False) -> list[str]:
    """The commands that show this lab's demo, for people: with `l7_served`, host routing and TLS too,
    then a failover."""
    tandem = program()
    if lab_dir.absolute() != default_lab_dir().absolute():
        tandem += f" --lab-dir {lab_dir}"
    first, second = state.devices[0].name, state.devices[1].name
    lines = [(f"curl http://{state.vip}/", f"{' or '.join(DEMO_BACKENDS)}, through the active device")]
    if l7_served:
        urls = l7_urls(state)
        address, port = split_host_port(state.vip or "", "vip")
        https_port = l7_ports(port)[1]
        lines += [(f"curl -H 'Host: {host}' {urls['http']}", f"{backend} only: host rule → pool {pool}")
                  for host, (pool, backend) in HOST_POOLS.items()]
        host, (pool, backend) = list(HOST_POOLS.items())[-1]
        lines += [
            (f"curl -k {urls['https']}", f"TLS terminated with certificate {CERTIFICATE}"),
            (f"curl --cacert {urls['ca']} --resolve {host}:{https_port}:{address} https://{host}:{https_port}/",
             f"{backend}: verified against the lab CA, routed by host to pool {pool}"),
        ]
    lines += [
        (f"{tandem} failover status", f"{first} is active for {state.traffic_group}"),
        (f"{tandem} lab kill {first}", "crash the active device"),
        (f"curl http://{state.vip}/", f"answers again within a second or two: {second} took over"),
        (f"{tandem} failover status --device {second}", f"{second} is active"),
        (f"{tandem} lab start {first}", "back, as standby"),
    ]
    width = max(len(command) for command, _ in lines)
    return [f"{command:<{width}}  # {comment}" for command, comment in lines]
