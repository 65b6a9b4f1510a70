"""The HAProxy half of bench/dataplane.py: Tandem's HAProxy engine (a lone `tandem serve --engine haproxy`
device, configured through the SDK) beside HAProxy configured by hand (the same binary, the equivalent
haproxy.cfg written here, run at the priority Tandem gives its own), against the same nginx with the same
wrk load, the two sides alternating in each round; then configuration changes through the SDK.

`compare` gives, for each `FIGURES` entry, both sides' requests/s (medians) and their ratio (Tandem / hand);
the milliseconds from an API write adding a pool member to that member answering through its virtual server
(p50, p99; and the p50 of the write alone); and the requests that failed while configuration changes
(members added and removed, weights set) applied under load.
"""

import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import RunningDevice, percentile
from tandem import Client, PoolMember, TandemError
from tandem.lab.l7 import LabTls, make_tls
from traffic import Backend, BackgroundLoad, Load, free_port, wait_listening, wrk

TANDEM_ADDRESS = "127.0.100.1"
HAND_ADDRESS = "127.0.100.2"
RULES = 20
"""Host/path rules of the HTTP virtual server; the load matches the last."""
IDENTIFIED = 8
"""Backends answering their own name, for the configuration changes (`id0` is the pool's first member)."""
VIRTUALS = ("tcp", "l7", "tls", "changes")
"""Tandem's virtual servers; the hand-configured HAProxy has the first three."""
CHANGE_TIMEOUT = 10.0
CHANGE_PAUSE = 0.2
"""Seconds between two configuration changes under load."""
SETTLED = 4
"""Answers in a row from `id0` that show a removed member gone (round-robin alternates while it serves)."""
UNDER_LOAD = ("add", "weight", "add", "remove", "weight", "remove")
"""The configuration changes under load, in this order, over and over."""

HAND_CFG = """global
    nbthread 1

defaults
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-request 30s
    timeout queue 10s
    timeout tunnel 1h

frontend tcp
    mode tcp
    bind {address}:{tcp}
    default_backend static_tcp

frontend l7
    mode http
    bind {address}:{l7}
    option forwardfor
    http-request set-header Forwarded 'for="%[src]";proto=http'
{use_backends}    default_backend static

frontend tls
    mode http
    bind {address}:{tls} ssl crt {crt} alpn h2,http/1.1
    option forwardfor
    http-request set-header Forwarded 'for="%[src]";proto=https'
    default_backend static

backend static_tcp
    mode tcp
    server s1 127.0.0.1:{backend}

backend static
    mode http
    server s1 127.0.0.1:{backend}

{rule_backends}"""
"""What one would write by hand for Tandem's tcp, l7 and tls virtual servers (same timeouts, one thread)."""


def rule_host(index: int) -> str:
    return f"app{index}.example.com"


@dataclass(frozen=True)
class Figure:
    """One side-by-side measure: its JSON key (`{key}_ratio`, `tandem_{key}_rps`, `hand_{key}_rps`; the ratio
    of `tcp` is `haproxy_engine_ratio`), the virtual server loaded, the path asked and extra request headers."""

    key: str
    virtual: str
    path: str = "/"
    headers: tuple[str, ...] = ()

    @property
    def ratio_key(self) -> str:
        return "haproxy_engine_ratio" if self.key == "tcp" else f"{self.key}_ratio"


FIGURES = (
    Figure("tcp", "tcp"),
    Figure("l7", "l7", f"/app{RULES - 1}/", (f"Host: {rule_host(RULES - 1)}",)),
    Figure("tls", "tls"),
    Figure("tls_handshake", "tls", headers=("Connection: close",)),  # a new TLS connection per request
)


def hand_config(ports: dict[str, int], backend: Backend, crt: Path) -> str:
    use_backends = "".join(f"    use_backend r{i} if {{ hdr(host) -i {rule_host(i)} }} {{ path_beg /app{i}/ }}\n"
                           for i in range(RULES))
    rule_backends = "".join(f"backend r{i}\n    mode http\n    server s1 127.0.0.1:{backend.port}\n\n"
                            for i in range(RULES))
    return HAND_CFG.format(address=HAND_ADDRESS, **ports, crt=crt, backend=backend.port, use_backends=use_backends,
                           rule_backends=rule_backends)


def tandem_operations(ports: dict[str, int], backend: Backend, certificate: LabTls) -> list[dict[str, Any]]:
    """One batch creating the same virtual servers on Tandem (and `changes`, an HTTP one on pool `ids`)."""

    def create(resource: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return {"action": "create", "resource": resource, "partition": "Common", "name": name, "body": body}

    def virtual(name: str, **body: Any) -> dict[str, Any]:
        return create("virtuals", name, {"address": TANDEM_ADDRESS, "port": ports[name], "pool": "static", **body})

    static = {"members": [{"address": "127.0.0.1", "port": backend.port}]}
    rules = [{"name": f"r{i}", "action": "forward", "pool": f"r{i}",
              "match": {"host": rule_host(i), "path": f"/app{i}/"}} for i in range(RULES)]
    return [create("certificates", "bench", {"certificate": certificate.chain, "key": certificate.key}),
            create("pools", "static", static),
            *(create("pools", f"r{i}", static) for i in range(RULES)),
            create("pools", "ids", {"members": [{"address": "127.0.0.1", "port": backend.identified["id0"]}]}),
            virtual("tcp"), virtual("l7", protocol="http", rules=rules),
            virtual("tls", protocol="https", certificates=["bench"]),
            virtual("changes", protocol="http", pool="ids")]


def same_scheduling(pid: int) -> Callable[[], None]:
    """For a child started in a new session: take the nice value of process `pid` and of its autogroup (Tandem
    raises its data plane's priority, and HAProxy inherits it: the hand-configured one gets the same)."""
    nice = os.getpriority(os.PRIO_PROCESS, pid)
    try:
        group: int | None = int(Path(f"/proc/{pid}/autogroup").read_text().split()[-1])
    except (OSError, ValueError, IndexError):
        group = None

    def apply() -> None:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, nice)
            if group is not None:
                Path("/proc/self/autogroup").write_text(str(group))

    return apply


def wait_served(client: Client, names: tuple[str, ...], timeout: float = 30.0) -> None:
    """Until the device's HAProxy listens for every virtual server `names`."""
    deadline = time.monotonic() + timeout
    state: Any = None
    while time.monotonic() < deadline:
        try:
            state = client.request("GET", "/api/dataplane")
        except TandemError as error:  # 503 while the data plane process starts
            state = error
        else:
            if all(state["virtuals"].get(f"/Common/{name}", {}).get("listening") for name in names):
                return
        time.sleep(0.1)
    raise SystemExit(f"Tandem's HAProxy does not serve {names} after {timeout} s: {state}")


def answer(port: int) -> str:
    """What the backend behind Tandem's virtual server at `port` answers, over a new connection."""
    with socket.create_connection((TANDEM_ADDRESS, port), timeout=2) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    return data.rpartition(b"\r\n\r\n")[2].decode().strip()


def wait_answers(port: int, name: str, times: int = 1) -> None:
    """Until `name` answers `times` times in a row."""
    deadline, in_a_row = time.monotonic() + CHANGE_TIMEOUT, 0
    while in_a_row < times:
        if time.monotonic() > deadline:
            raise SystemExit(f"{name} does not answer through port {port} after {CHANGE_TIMEOUT} s")
        try:
            in_a_row = in_a_row + 1 if answer(port) == name else 0
        except OSError:
            in_a_row = 0
        time.sleep(0.002)


def change_latencies(client: Client, backend: Backend, port: int, count: int) -> tuple[list[float], list[float]]:
    """Milliseconds from `POST` of a member to pool `ids` until it answers, and of the `POST` alone; the member
    is removed after each (and gone before the next)."""
    names = [name for name in backend.identified if name != "id0"]
    serving, writes = [], []
    for i in range(count):
        name = names[i % len(names)]
        member = PoolMember("Common", "ids", address="127.0.0.1", port=backend.identified[name], connection=client)
        started = time.perf_counter()
        member.post()
        writes.append((time.perf_counter() - started) * 1000)
        wait_answers(port, name)
        serving.append((time.perf_counter() - started) * 1000)
        member.delete()
        wait_answers(port, "id0", SETTLED)
    return serving, writes


def changes_under_load(client: Client, backend: Backend, port: int, count: int, connections: int) -> Load:
    """What wrk reports over pool `ids`'s virtual server while `count` changes (`UNDER_LOAD`) apply."""
    spare = deque(name for name in backend.identified if name != "id0")
    added: deque[PoolMember] = deque()
    load = BackgroundLoad(f"http://{TANDEM_ADDRESS}:{port}/", connections)
    try:
        time.sleep(0.5)
        for i in range(count):
            kind = UNDER_LOAD[i % len(UNDER_LOAD)]
            if kind == "add" or not added:
                added.append(PoolMember("Common", "ids", address="127.0.0.1", port=backend.identified[spare.popleft()],
                                        connection=client).post())
            elif kind == "weight":
                added[-1].weight = 2 + i % 5
                added[-1].patch()
            else:
                member = added.popleft()
                member.delete()
                spare.extend(name for name, p in backend.identified.items() if p == member.port)
            time.sleep(CHANGE_PAUSE)
        time.sleep(1.0)  # the last change applies under load too
    finally:
        result = load.stop()
    return result


def compare(work: Path, backend: Backend, seconds: int, rounds: int, connections: int, changes: int) -> dict:
    """The figures (see the module's docstring), as JSON keys."""
    binary = shutil.which("haproxy")
    assert binary is not None
    certificate = make_tls("127.0.0.1")  # a leaf for *.lab from a CA made on the spot, as the lab's
    tandem_ports = {name: free_port(TANDEM_ADDRESS) for name in VIRTUALS}
    hand_ports = {name: free_port(HAND_ADDRESS) for name in VIRTUALS[:3]}
    crt = work / "hand.pem"
    crt.write_text(certificate.chain + certificate.key)
    (work / "haproxy.cfg").write_text(hand_config(hand_ports, backend, crt))
    device = RunningDevice("tandem", work / "tandem", extra_args=["--engine", "haproxy"])
    runs: dict[tuple[str, str], list[Load]] = {(f.key, side): [] for f in FIGURES for side in ("tandem", "hand")}
    hand = None

    def url(figure: Figure, side: str) -> str:
        scheme = "https" if figure.virtual == "tls" else "http"
        address, ports = (TANDEM_ADDRESS, tandem_ports) if side == "tandem" else (HAND_ADDRESS, hand_ports)
        return f"{scheme}://{address}:{ports[figure.virtual]}{figure.path}"

    try:
        device.start()
        with device.client() as client:
            client.batch(tandem_operations(tandem_ports, backend, certificate))
            wait_served(client, VIRTUALS)
            engine = client.device()["engine"]
            # any shard's master: the data plane process starts them all alike
            pid_file = next((device.data_dir / "run" / "haproxy").glob("*/haproxy.pid"))
            tandem_haproxy = int(pid_file.read_text())
            with open(work / "haproxy.log", "w") as log:
                hand = subprocess.Popen([binary, "-W", "-f", str(work / "haproxy.cfg")], stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True,
                                        preexec_fn=same_scheduling(tandem_haproxy))
            for port in hand_ports.values():
                wait_listening(HAND_ADDRESS, port)
            for figure in FIGURES:  # warm up
                for side in ("tandem", "hand"):
                    wrk(url(figure, side), 1, connections, figure.headers)
            for round_ in range(rounds):
                sides = ("hand", "tandem") if round_ % 2 == 0 else ("tandem", "hand")
                for figure in FIGURES:
                    for side in sides:
                        runs[(figure.key, side)].append(wrk(url(figure, side), seconds, connections, figure.headers))
                    print(f"round {round_ + 1} {figure.key}: Tandem {runs[(figure.key, 'tandem')][-1].rps:.0f} req/s,"
                          f" by hand {runs[(figure.key, 'hand')][-1].rps:.0f} req/s", file=sys.stderr)
            latencies, writes = change_latencies(client, backend, tandem_ports["changes"], changes)
            print(f"{changes} changes: API write to the new member answering, "
                  f"{', '.join(f'{s:.0f}' for s in latencies)} ms", file=sys.stderr)
            under_load = changes_under_load(client, backend, tandem_ports["changes"], changes, connections)
            print(f"{changes} changes under load: {under_load}", file=sys.stderr)
    finally:
        if hand is not None:
            hand.terminate()
            hand.wait(10)
        device.stop()
    figures: dict[str, Any] = {}
    for figure in FIGURES:
        tandem = statistics.median(load.rps for load in runs[(figure.key, "tandem")])
        by_hand = statistics.median(load.rps for load in runs[(figure.key, "hand")])
        figures |= {figure.ratio_key: round(tandem / by_hand, 3), f"tandem_{figure.key}_rps": round(tandem),
                    f"hand_{figure.key}_rps": round(by_hand)}
    return figures | {
        "failed_side_by_side": sum(load.failed for loads in runs.values() for load in loads),
        "change_p50_ms": round(percentile(latencies, 0.5), 1),
        "change_p99_ms": round(percentile(latencies, 0.99), 1),
        "change_write_p50_ms": round(percentile(writes, 0.5), 1),
        "changes": changes,
        "failed_during_changes": under_load.failed,
        "requests_during_changes": under_load.requests,
        "haproxy_version": engine["version"],
        "rules": RULES,
    }
