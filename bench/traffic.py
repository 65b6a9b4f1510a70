"""Traffic for the data-plane benchmarks: the backend (nginx, else the runner's tiny HTTP server) and the
load generator (wrk), with what wrk reports read into `Load`."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent

NGINX_CONF = """worker_processes 1; pid {work}/nginx.pid; error_log {work}/nginx.err; daemon on;
events {{ worker_connections 1024; }}
http {{ access_log off; keepalive_requests 100000;
  client_body_temp_path {work}; proxy_temp_path {work}; fastcgi_temp_path {work}; uwsgi_temp_path {work};
  scgi_temp_path {work};
  server {{ listen 127.0.0.1:{port}; root {work}/www; }}
{identified} }}
"""
IDENTIFIED = '  server {{ listen 127.0.0.1:{port}; default_type text/plain; return 200 "{name}\\n"; }}\n'
"""A backend that answers its own name (nginx only): how a benchmark sees which member served a request."""


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_listening(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"nothing listens on {host}:{port}") from None
            time.sleep(0.05)


def start_runner(work: Path, *args: str) -> subprocess.Popen:
    """A bench/dataplane_runner.py process, once it says `ready`."""
    with open(work / f"{args[0]}.err", "w") as errors:
        process = subprocess.Popen([sys.executable, str(BENCH / "dataplane_runner.py"), *args],
                                   stdout=subprocess.PIPE, stderr=errors, text=True)
    assert process.stdout is not None
    if process.stdout.readline().strip() != "ready":
        raise SystemExit(f"dataplane_runner {args[0]} did not start: {(work / f'{args[0]}.err').read_text()}")
    return process


@dataclass
class Backend:
    """The backend on 127.0.0.1: `port` serves `/` and `/appN/` (a small static answer); `identified` maps a
    name to the port of a server answering that name (nginx only)."""

    kind: str
    port: int
    work: Path
    process: subprocess.Popen | None = None
    identified: dict[str, int] = field(default_factory=dict)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
        pid_file = self.work / "nginx.pid"
        if pid_file.exists():
            subprocess.run(["kill", pid_file.read_text().strip()], check=False)


def start_backend(work: Path, paths: int = 0, identified: int = 0) -> Backend:
    """nginx when installed (what the HAProxy reference uses), with `paths` directories `/appN/` and
    `identified` servers answering `idN`; else the runner's tiny HTTP server (neither of those)."""
    port = free_port("127.0.0.1")
    if not shutil.which("nginx"):
        return Backend("python-uvloop", port, work, start_runner(work, "backend", "--listen", f"127.0.0.1:{port}"))
    for directory in ["", *(f"app{i}" for i in range(paths))]:
        (work / "www" / directory).mkdir(parents=True, exist_ok=True)
        (work / "www" / directory / "index.html").write_text("ok\n")
    names = {f"id{i}": free_port("127.0.0.1") for i in range(identified)}
    servers = "".join(IDENTIFIED.format(port=p, name=name) for name, p in names.items())
    (work / "nginx.conf").write_text(NGINX_CONF.format(work=work, port=port, identified=servers))
    subprocess.run(["nginx", "-c", str(work / "nginx.conf")], check=True)
    for p in (port, *names.values()):
        wait_listening("127.0.0.1", p)
    return Backend("nginx", port, work, identified=names)


def parse_latency(text: str) -> float:
    """A wrk latency ("812.00us", "1.23ms", "2.01s") in milliseconds."""
    for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    raise ValueError(f"unknown latency {text!r}")


@dataclass(frozen=True)
class Load:
    """What one wrk run reports: requests/s, p99 latency (ms), requests, and those that failed (a status
    of 400 or more, or a socket error: connect, read, write, timeout)."""

    rps: float
    p99_ms: float
    requests: int
    failed: int


def wrk_command(url: str, seconds: int, connections: int, headers: tuple[str, ...] = ()) -> list[str]:
    """wrk over keep-alive connections (unless a `Connection: close` header says otherwise), one thread."""
    return ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency",
            *(arg for header in headers for arg in ("-H", header)), url]


def read_wrk(out: str, url: str) -> Load:
    rps = p99 = requests = None
    failed = 0
    for line in out.splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[1] == "requests" and fields[2] == "in":
            requests = int(fields[0])
        elif line.startswith("Requests/sec:"):
            rps = float(fields[1])
        elif len(fields) == 2 and fields[0] == "99%":
            p99 = parse_latency(fields[1])
        elif "Non-2xx" in line or "Socket errors" in line:
            failed += sum(int(word.strip(",")) for word in fields if word.strip(",").isdigit())
            print(f"wrk {url}: {line.strip()}", file=sys.stderr)
    if rps is None or p99 is None or requests is None:
        raise SystemExit(f"cannot read wrk's output:\n{out}")
    return Load(rps, p99, requests, failed)


def wrk(url: str, seconds: int, connections: int, headers: tuple[str, ...] = ()) -> Load:
    """One wrk run against `url`."""
    out = subprocess.run(wrk_command(url, seconds, connections, headers), capture_output=True, text=True,
                         check=True).stdout
    return read_wrk(out, url)


class BackgroundLoad:
    """wrk running against `url` until `stop()` (at most `limit` seconds), which returns what it reports."""

    def __init__(self, url: str, connections: int, limit: int = 600) -> None:
        self.url = url
        self.process = subprocess.Popen(wrk_command(url, limit, connections), stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)

    def stop(self) -> Load:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGINT)  # wrk stops and reports
        out, err = self.process.communicate(timeout=30)
        if self.process.returncode:
            raise SystemExit(f"wrk failed: {err}")
        return read_wrk(out, self.url)
