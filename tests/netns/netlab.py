"""Two Tandem devices and a client in network namespaces: the failover lab of the tests and of
`bench/failover.py`, built like the reference script keepalived-takeover builds its own.

A switch namespace holds a bridge; hosts `a` and `b` (the devices) and `c` (the client) hang on it
by veth pairs (`eth0` in the host, `p0`/`p1`/`p2` on the bridge), addresses 198.18.0.1-3/16 (the
range set aside for benchmarks). Each device runs `tandem serve --addresses linux --interface eth0`
on its address and a backend on 127.0.0.1:9000 that answers its host's name, so the name a client
reads through the virtual server 198.18.0.100:8080 says which device proxied it.

The devices' addresses exist only inside the namespaces. This process reaches them from worker
threads that entered a namespace (`setns` affects the calling thread only; a socket belongs to the
namespace of the thread that created it): `lab.ns[host].run(fn)` runs `fn` in host's namespace.

Root and iproute2 are needed. Run as a script, the module is the benchmark's polling client
(`netlab.py --client NAME --deadline S`, inside the client namespace), the anchor's client verbatim.
"""

import argparse
import asyncio
import contextlib
import ctypes
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

TESTS = str(Path(__file__).resolve().parent.parent)
if TESTS not in sys.path:  # bench/ and the client script put only this folder on sys.path
    sys.path.append(TESTS)

from waiting import wait_until  # noqa: E402  (tests/waiting.py; also imported from here by bench/)

T = TypeVar("T")

ADMIN_PASSWORD = "netns-admin-pass"
ADDR = {"a": "198.18.0.1", "b": "198.18.0.2", "c": "198.18.0.3", "d": "198.18.0.4"}
BRIDGE_PORT = {"a": "p0", "b": "p1", "c": "p2", "d": "p3"}
MGMT_PORT = 8443
VIP, VIP_PORT = "198.18.0.100", 8080
BACKEND_PORT = 9000
GROUP, TRAFFIC_GROUP = "dg", "traffic-group-1"
START_TIMEOUT = 30.0
CLONE_NEWNET = 0x40000000

_labs = itertools.count(1)

BACKEND = (
    "import socket,sys\n"
    "s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
    f"s.bind(('127.0.0.1',{BACKEND_PORT}));s.listen(64)\n"
    "while True:\n"
    "  c,_=s.accept();c.sendall(sys.argv[1].encode());c.close()\n"
)
"""The anchor's server, on the devices' loopback: pool member 127.0.0.1:9000 on each device."""
OUTSIDE_PRIORITY = -20
"""The backends and clients stand for other hosts: on this shared machine they get the CPU before the
devices' management processes, as the devices' data planes do (`tandem.ipc.raise_priority`)."""


def outside_host() -> None:
    """Give this process the priority of a host of its own (root; else nothing changes)."""
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, OUTSIDE_PRIORITY)
        Path("/proc/self/autogroup").write_text(str(OUTSIDE_PRIORITY))


def available() -> str | None:
    """Why the lab cannot run here (None: it can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 (ip) is not installed"
    return None


def sh(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    result = subprocess.run(cmd, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {result.returncode}: {result.stderr.strip()}")
    return result


def kill_group(process: subprocess.Popen | None, sig: int = signal.SIGKILL, wait: float = 10.0) -> None:
    """Signal the process group of a process this lab started (start_new_session), and reap it."""
    if process is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    try:
        process.wait(wait)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


class Namespace:
    """A named network namespace and one worker thread inside it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._pool: ThreadPoolExecutor | None = None

    def _enter(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                errno = ctypes.get_errno()
                raise OSError(errno, f"setns {self.name}: {os.strerror(errno)}")
        finally:
            os.close(fd)

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        """Start `fn(*args, **kwargs)` in this namespace (its sockets are this namespace's); calls run one
        at a time, in order."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix=self.name, initializer=self._enter)
        return self._pool.submit(fn, *args, **kwargs)

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` in this namespace, waited for."""
        return self.submit(fn, *args, **kwargs).result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def ask(timeout: float = 0.05, address: str = VIP) -> str | None:
    """One TCP request to the virtual address (from the calling namespace): the answering host, or None.
    The anchor's client request, verbatim (`address`: another virtual address on the same port)."""
    try:
        with socket.create_connection((address, VIP_PORT), timeout=timeout) as s:
            s.settimeout(timeout)
            return s.recv(16).decode() or None
    except OSError:
        return None


def client_loop(expect: str, deadline_s: float) -> None:
    """The anchor's polling client: waits for `expect` to answer, prints when (monotonic clock)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < deadline_s:
        if ask() == expect:
            print(time.monotonic(), flush=True)
            return
        time.sleep(0.005)
    print("timeout", flush=True)


class Api:
    """An admin session of one device's REST API, run from a namespace that reaches it."""

    def __init__(self, ns: Namespace, url: str, password: str, timeout: float = 5.0) -> None:
        self.ns, self.url, self.password = ns, url, password
        self._timeout = timeout
        self._client: httpx.Client | None = None
        self._token: str | None = None

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        if self._client is None:
            self._client = httpx.Client(base_url=self.url, verify=False, timeout=self._timeout)
        if self._token is None and path != "/api/health":
            login = self._client.post("/api/auth/login", json={"username": "admin", "password": self.password})
            login.raise_for_status()
            self._token = login.json()["token"]
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        response = self._client.request(method, path, headers=headers, **kwargs)
        if response.status_code == 401 and path != "/api/health":
            self._token = None
            return self._request(method, path, **kwargs)
        return response

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.ns.run(self._request, method, path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)

    def reset(self) -> None:
        """Forget the connection and the token (after the device restarted)."""
        client, self._client, self._token = self._client, None, None
        if client is not None:
            self.ns.run(client.close)


def check(response: httpx.Response, *statuses: int) -> httpx.Response:
    expected = statuses or (200, 201, 202, 204)
    assert response.status_code in expected, (
        f"{response.request.method} {response.request.url.path}: {response.status_code} {response.text}")
    return response


@dataclass
class Host:
    """One device host of the lab: its namespace, its `tandem serve` daemon and its backend."""

    name: str
    ns: Namespace
    work: Path
    provider: str = "linux"
    """The address provider: `linux` (floating addresses on eth0) or `loopback` (none to move)."""
    env: dict[str, str] = field(default_factory=dict)
    """More environment of the daemon (e.g. TANDEM_TEST_HOOKS=1)."""
    engine: str | None = None
    """The data plane engine (`tandem serve --engine`; None: the default)."""
    daemon: subprocess.Popen | None = None
    backend: subprocess.Popen | None = None
    api: Api = field(init=False)

    def __post_init__(self) -> None:
        self.api = Api(self.ns, self.url, ADMIN_PASSWORD)

    @property
    def address(self) -> str:
        return ADDR[self.name]

    @property
    def url(self) -> str:
        return f"https://{self.address}:{MGMT_PORT}"

    @property
    def data_dir(self) -> Path:
        return self.work / self.name

    @property
    def log_path(self) -> Path:
        return self.work / f"{self.name}.log"

    @property
    def fingerprint(self) -> str:
        from tandem.trust.identity import certificate_fingerprint

        return certificate_fingerprint((self.data_dir / "identity" / "cert.pem").read_bytes())

    def start_backend(self) -> None:
        self.backend = subprocess.Popen(["ip", "netns", "exec", self.ns.name, sys.executable, "-c", BACKEND,
                                         self.name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True, preexec_fn=outside_host)

    def start_daemon(self) -> None:
        env = dict(os.environ, TANDEM_ADMIN_PASSWORD=ADMIN_PASSWORD, **self.env)
        with self.log_path.open("ab") as log:
            self.daemon = subprocess.Popen(
                ["ip", "netns", "exec", self.ns.name, sys.executable, "-m", "tandem", "serve", "--name", self.name,
                 "--data-dir", str(self.data_dir), "--listen", f"{self.address}:{MGMT_PORT}",
                 "--addresses", self.provider, "--interface", "eth0",
                 *(["--engine", self.engine] if self.engine else [])],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.api.reset()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.daemon is not None and self.daemon.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.daemon.returncode}:\n{self.log_tail()}")
            try:
                if self.api.get("/api/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} not ready after {START_TIMEOUT} s:\n{self.log_tail()}")

    def kill_daemon(self) -> None:
        """kill -9 (its whole process group), as a crashed host."""
        kill_group(self.daemon)
        self.daemon = None

    def stop(self) -> None:
        kill_group(self.daemon, signal.SIGTERM)
        kill_group(self.backend)
        self.daemon = self.backend = None
        self.api.reset()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def log_errors(self, count: int = 4) -> list[str]:
        """The last error lines of the log (tracebacks reduced to their last line)."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []
        errors = [line for line in lines if " ERROR " in line or " WARNING " in line
                  or (line[:1].isalpha() and ("Error" in line or "Exception" in line) and ":" in line)]
        return errors[-count:]

    # -- failover, as this device sees it ----------------------------------------------------------

    def failover(self) -> dict:
        return check(self.api.get("/api/failover/status"), 200).json()

    def traffic_group(self) -> dict:
        return next(t for t in self.failover()["traffic_groups"] if t["name"] == TRAFFIC_GROUP)

    def state(self) -> str:
        return self.traffic_group()["state"]

    def events(self) -> list[dict]:
        return check(self.api.get("/api/failover/events"), 200).json()["records"]

    def addresses(self) -> set[str]:
        """The addresses on this host's eth0 (what the kernel holds, not what the daemon says)."""
        out = sh("ip", "-o", "-4", "addr", "show", "dev", "eth0", ns=self.ns.name).stdout
        return {line.split()[3].split("/")[0] for line in out.splitlines()}


class Lab:
    """The topology, the devices (by default a and b, a first in HA order), the client host (by default
    c, or none); `close()` removes everything."""

    def __init__(self, work: Path, interval: float = 0.2, timeout: float | None = None, auto_failback: bool = False,
                 devices: tuple[str, ...] = ("a", "b"), client: str | None = "c", provider: str = "linux",
                 env: dict[str, str] | None = None, engine: str | None = None, others: tuple[str, ...] = ()) -> None:
        self.work = work
        self.interval, self.timeout, self.auto_failback = interval, timeout, auto_failback
        self.prefix = f"tn{os.getpid()}x{next(_labs)}"
        self.attached = (*devices, *([client] if client else []), *others)
        """The hosts on the bridge (`others`: hosts without a device, say members' host)."""
        self.ns = {role: Namespace(f"{self.prefix}{role}") for role in ("sw", *self.attached)}
        self.hosts = {name: Host(name, self.ns[name], work, provider, env or {}, engine) for name in devices}
        self._created: list[str] = []

    @property
    def a(self) -> Host:
        return self.hosts["a"]

    @property
    def b(self) -> Host:
        return self.hosts["b"]

    def __enter__(self) -> "Lab":
        try:
            self.build()
            self.start()
            self.form()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- topology -------------------------------------------------------------------------------

    def build(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        sw = self.ns["sw"].name
        for role in ("sw", *self.attached):
            name = self.ns[role].name
            sh("ip", "netns", "add", name)
            self._created.append(name)
            sh("ip", "-n", name, "link", "set", "lo", "up")
        sh("ip", "-n", sw, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", sw, "link", "set", "br0", "up")
        for host in self.attached:
            name, port = self.ns[host].name, BRIDGE_PORT[host]
            sh("ip", "link", "add", "eth0", "netns", name, "type", "veth", "peer", "name", port, "netns", sw)
            sh("ip", "-n", sw, "link", "set", port, "master", "br0")
            sh("ip", "-n", sw, "link", "set", port, "up")
            sh("ip", "-n", name, "addr", "add", ADDR[host] + "/16", "dev", "eth0")
            sh("ip", "-n", name, "link", "set", "eth0", "up")

    def close(self) -> None:
        for host in self.hosts.values():
            try:
                host.stop()
            except Exception as error:  # tear down the rest whatever happens
                print(f"netlab: stopping {host.name}: {error}", file=sys.stderr)
        for namespace in self.ns.values():
            namespace.close()
        for name in reversed(self._created):
            sh("ip", "netns", "del", name, check=False)
        self._created.clear()

    def link(self, host: str, up: bool) -> None:
        """The host's own interface (eth0) up or down."""
        sh("ip", "-n", self.ns[host].name, "link", "set", "eth0", "up" if up else "down")

    def bridge_port(self, host: str, up: bool) -> None:
        """The host's port on the bridge up or down: cuts the host off (or back on) the network."""
        sh("ip", "-n", self.ns["sw"].name, "link", "set", BRIDGE_PORT[host], "up" if up else "down")

    # -- devices --------------------------------------------------------------------------------

    def start(self) -> None:
        for host in self.hosts.values():
            host.start_backend()
            host.start_daemon()
        for host in self.hosts.values():
            host.wait_ready()

    def form(self) -> None:
        """Trust, the sync-failover group, the traffic group (HA order a, b), pool and virtual server;
        returns once both devices are In Sync and the virtual address answers from a."""
        self.form_group()
        check(self.a.api.post("/api/pools", json={"name": "web", "members": [
            {"address": "127.0.0.1", "port": BACKEND_PORT}]}), 201)
        check(self.a.api.post("/api/virtuals", json={"name": "www", "address": VIP, "port": VIP_PORT, "pool": "web",
                                                      "traffic_group": TRAFFIC_GROUP}), 201)
        self.wait_in_sync()
        self.wait_roles("a", 15)

    def form_group(self, addresses: tuple[str, ...] = ()) -> None:
        """Trust between a and b, the sync-failover group, the traffic group (HA order a, b; its floating
        `addresses`)."""
        a, b = self.a, self.b
        check(a.api.post("/api/trust/devices", json={"url": b.url, "username": "admin", "password": ADMIN_PASSWORD,
                                                      "fingerprint": b.fingerprint}), 201)
        check(a.api.post("/api/device-groups", json={
            "name": GROUP, "type": "sync-failover", "members": ["a", "b"], "partitions": ["Common"],
            "heartbeat_interval": self.interval, "heartbeat_timeout": self.timeout}), 201)  # None: adaptive
        check(a.api.post("/api/traffic-groups", json={
            "name": TRAFFIC_GROUP, "device_group": GROUP, "ha_order": ["a", "b"], "addresses": list(addresses),
            "auto_failback": self.auto_failback}), 201)

    def wait_in_sync(self) -> None:
        wait_until(lambda: all(h.api.get(f"/api/device-groups/{GROUP}/status").json().get("status") == "In Sync"
                               for h in (self.a, self.b)), 30, "the group In Sync on a and b", self.describe)

    def wait_roles(self, active: str, timeout: float) -> None:
        """Until `active` is active and the other standby, both seeing each other alive, and the
        virtual address answers from `active`."""
        other = "b" if active == "a" else "a"

        def settled() -> bool:
            tgs = {name: self.hosts[name].traffic_group() for name in (active, other)}
            return (tgs[active]["state"] == "active" and tgs[other]["state"] == "standby"
                    and all(m["alive"] for t in tgs.values() for m in t["members"])
                    and self.ask() == active)

        wait_until(settled, timeout, f"{active} active, {other} standby, the VIP answering from {active}",
                   self.describe)

    def describe(self) -> dict[str, Any]:
        """What each device says of failover, which addresses each host holds, who answers: for failures."""
        out: dict[str, Any] = {}
        for host in self.hosts.values():
            try:
                status = host.failover()
                out[host.name] = {"traffic_groups": [{k: t[k] for k in ("state", "active_device", "members")}
                                                     for t in status["traffic_groups"]],
                                  "heartbeat": status["heartbeat"], "eth0": sorted(host.addresses()),
                                  "dataplane": host.api.get("/api/dataplane").json()}
            except Exception as error:  # for the message only
                out[host.name] = f"{type(error).__name__}: {error}"
            out[f"{host.name}_log_errors"] = host.log_errors()
        out["vip_answers"] = self.ask(0.5)
        out["client_neighbours"] = sh("ip", "neigh", ns=self.ns["c"].name, check=False).stdout.strip()
        out["macs"] = {name: self.mac(name) for name in self.hosts}
        return out

    def mac(self, host: str) -> str:
        out = sh("ip", "-o", "link", "show", "dev", "eth0", ns=self.ns[host].name, check=False).stdout
        words = out.split()
        return words[words.index("link/ether") + 1] if "link/ether" in words else "?"

    # -- the client ------------------------------------------------------------------------------

    def ask(self, timeout: float = 0.05) -> str | None:
        """One request to the virtual server from the client host: the answering device, or None."""
        return self.ns["c"].run(ask, timeout)

    def poll_until(self, expect: str, deadline_s: float) -> Future[float | None]:
        """Start the anchor's polling client in the client host: its future is the monotonic time
        `expect` answered (None: not within `deadline_s`)."""

        def loop() -> float | None:
            t0 = time.monotonic()
            while time.monotonic() - t0 < deadline_s:
                if ask() == expect:
                    return time.monotonic()
                time.sleep(0.005)
            return None

        return self.ns["c"].submit(loop)

    # -- failing and restoring a device ---------------------------------------------------------

    def fail(self, name: str) -> None:
        """The anchor's failure: the host's link down, then its processes killed with -9."""
        host = self.hosts[name]
        self.link(name, up=False)
        host.kill_daemon()
        kill_group(host.backend)
        host.backend = None

    def recover(self, name: str) -> None:
        """The failed host comes back as a rebooted one: link up, no address but its own (the killed
        daemon left the virtual address on eth0), backend and daemon started; returns once it serves."""
        host = self.hosts[name]
        self.link(name, up=True)
        sh("ip", "-n", self.ns[name].name, "addr", "flush", "dev", "eth0")
        sh("ip", "-n", self.ns[name].name, "addr", "add", ADDR[name] + "/16", "dev", "eth0")
        sh("ip", "-n", self.ns["c"].name, "neigh", "flush", "all", check=False)
        host.start_backend()
        host.start_daemon()
        host.wait_ready()


@contextlib.contextmanager
def formed(lab: Lab, log_lines: int = 40, addresses: tuple[str, ...] | None = None) -> Iterator[Lab]:
    """`lab` built, started and formed for the block (with `addresses`, the group alone, the traffic group
    floating them: the test makes its pools and virtual servers); whatever happens, each device's last
    `log_lines` log lines are printed to stderr (pytest shows them when the test fails), then the lab is
    closed."""
    try:
        lab.build()
        lab.start()
        if addresses is None:
            lab.form()
        else:
            lab.form_group(addresses)
        yield lab
    finally:
        print_logs(lab.hosts.values(), log_lines)
        lab.close()


def print_logs(hosts: Iterable[Host], lines: int = 40) -> None:
    """The last `lines` lines of each host's device log, on stderr."""
    for host in hosts:
        print(f"--- {host.name}.log\n{host.log_tail(lines)}", file=sys.stderr)


def count_loop(seconds: float, concurrency: int, pause: float = 0.0) -> None:
    """Requests to the virtual address for `seconds`, `concurrency` at a time (each a connection of its own,
    `pause` seconds apart): prints how many each host answered and how many went unanswered, as `none`."""
    counts: dict[str, int] = {}
    outside_host()

    async def one() -> str:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(VIP, VIP_PORT), 0.5)
        except (OSError, TimeoutError):
            return "none"
        try:
            return (await asyncio.wait_for(reader.read(16), 0.5)).decode() or "none"
        except (OSError, TimeoutError):
            return "none"
        finally:
            writer.close()

    async def worker(deadline: float) -> None:
        while time.monotonic() < deadline:
            answer = await one()
            counts[answer] = counts.get(answer, 0) + 1
            await asyncio.sleep(pause)

    async def main() -> None:
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(worker(deadline) for _ in range(concurrency)))

    asyncio.run(main())
    print(json.dumps(counts), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="The failover lab's clients (run inside the client host).")
    parser.add_argument("--client", help="poll until this host answers; print when (the anchor's client)")
    parser.add_argument("--deadline", type=float, default=30)
    parser.add_argument("--count", type=float, metavar="SECONDS", help="count answers for SECONDS")
    parser.add_argument("--concurrency", type=int, default=8, help="requests at a time, with --count")
    parser.add_argument("--pause", type=float, default=0.0, help="seconds between requests, with --count")
    args = parser.parse_args()
    if args.count:
        count_loop(args.count, args.concurrency, args.pause)
    else:
        client_loop(args.client, args.deadline)


if __name__ == "__main__":
    main()
