#!/usr/bin/env python3
"""Data-plane benchmark: HTTP requests/s through one builtin-engine virtual server (its own process,
uvloop) against the same backend reached directly, with the same load generator.

The backend is nginx (nginx-light) when installed, else a small uvloop HTTP server; the load is
wrk over keep-alive connections (`wrk -t1 -cCONNS -dSECSs --latency`), direct and proxied runs
alternating for ROUNDS rounds; figures are medians. With haproxy, nginx and wrk installed, the
reference script haproxy-ratio (`common.ANCHORS`) gives HAProxy's ratio on this machine too.

Prints progress on stderr and, last, one JSON line: rps, direct_rps, ratio (rps / direct_rps, of
the medians), ratio_of_rounds (median of the per-round ratios, as the HAProxy script computes its
own), p99_ms, direct_p99_ms, proxy_cpu_us_per_request (the proxy process's CPU time per proxied
request: steadier than requests/s on a busy machine), haproxy_ratio (when available), machine, ...

    .venv/bin/python bench/dataplane.py [--seconds 5] [--rounds 3] [--connections 50] [--no-haproxy]
    (apt-get install nginx-light wrk haproxy)
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import anchor, machine, rss_mb

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
ANCHOR = anchor("haproxy-ratio")
VIRTUAL_ADDRESS = "127.0.100.1"

NGINX_CONF = """worker_processes 1; pid {work}/nginx.pid; error_log {work}/nginx.err; daemon on;
events {{ worker_connections 1024; }}
http {{ access_log off; keepalive_requests 100000;
  client_body_temp_path {work}; proxy_temp_path {work}; fastcgi_temp_path {work}; uwsgi_temp_path {work};
  scgi_temp_path {work};
  server {{ listen 127.0.0.1:{port}; root {work}/www; }} }}
"""


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


def start_backend(work: Path) -> tuple[str, int, subprocess.Popen | None]:
    """nginx when installed (what the HAProxy reference uses), else the runner's tiny HTTP server."""
    port = free_port("127.0.0.1")
    if shutil.which("nginx"):
        (work / "www").mkdir()
        (work / "www" / "index.html").write_text("ok\n")
        (work / "nginx.conf").write_text(NGINX_CONF.format(work=work, port=port))
        subprocess.run(["nginx", "-c", str(work / "nginx.conf")], check=True)
        wait_listening("127.0.0.1", port)
        return "nginx", port, None
    return "python-uvloop", port, start_runner(work, "backend", "--listen", f"127.0.0.1:{port}")


def stop_nginx(work: Path) -> None:
    pid_file = work / "nginx.pid"
    if pid_file.exists():
        subprocess.run(["kill", pid_file.read_text().strip()], check=False)


def parse_latency(text: str) -> float:
    """A wrk latency ("812.00us", "1.23ms", "2.01s") in milliseconds."""
    for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    raise ValueError(f"unknown latency {text!r}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(host: str, port: int, seconds: int, connections: int) -> tuple[float, float, int]:
    """(requests/s, p99 latency in ms, requests) of one wrk run over keep-alive connections."""
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", f"http://{host}:{port}/"],
                         capture_output=True, text=True, check=True).stdout
    rps = p99 = requests = None
    for line in out.splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[1] == "requests" and fields[2] == "in":
            requests = int(fields[0])
        elif line.startswith("Requests/sec:"):
            rps = float(fields[1])
        elif len(fields) == 2 and fields[0] == "99%":
            p99 = parse_latency(fields[1])
        elif "Non-2xx" in line or "Socket errors" in line:
            print(f"wrk {host}:{port}: {line.strip()}", file=sys.stderr)
    if rps is None or p99 is None or requests is None:
        raise SystemExit(f"cannot read wrk's output:\n{out}")
    return rps, p99, requests


def haproxy_ratio(seconds: int, rounds: int, connections: int) -> dict | None:
    """HAProxy's figures from the reference script, when it and its tools are there."""
    if not ANCHOR.exists() or not all(shutil.which(t) for t in ("haproxy", "nginx", "wrk")):
        print("haproxy reference skipped (needs haproxy, nginx-light, wrk)", file=sys.stderr)
        return None
    result = subprocess.run([str(ANCHOR), str(seconds), str(rounds), str(connections)], capture_output=True,
                            text=True)
    lines = result.stdout.strip().splitlines()
    if result.returncode or not lines:
        print(f"haproxy reference failed: {result.stderr.strip()}", file=sys.stderr)
        return None
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--no-haproxy", action="store_true", help="skip the HAProxy reference run")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("needs wrk (apt-get install wrk)")
    with tempfile.TemporaryDirectory(prefix="tandem-bench-dataplane-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)  # nginx workers may run as another user
        backend, backend_port, backend_process = start_backend(work)
        proxy = None
        try:
            vs_port = free_port(VIRTUAL_ADDRESS)
            proxy = start_runner(work, "proxy", "--listen", f"{VIRTUAL_ADDRESS}:{vs_port}",
                                 "--member", f"127.0.0.1:{backend_port}")
            wrk("127.0.0.1", backend_port, 1, args.connections)  # warm up both
            wrk(VIRTUAL_ADDRESS, vs_port, 1, args.connections)
            direct, proxied, cpu = [], [], 0.0
            for round_ in range(args.rounds):
                direct.append(wrk("127.0.0.1", backend_port, args.seconds, args.connections))
                used = cpu_seconds(proxy.pid)
                proxied.append(wrk(VIRTUAL_ADDRESS, vs_port, args.seconds, args.connections))
                cpu += cpu_seconds(proxy.pid) - used
                print(f"round {round_ + 1}: direct {direct[-1][0]:.0f} req/s p99 {direct[-1][1]:.2f} ms, "
                      f"proxied {proxied[-1][0]:.0f} req/s p99 {proxied[-1][1]:.2f} ms", file=sys.stderr)
            proxy_rss = rss_mb(proxy.pid)
        finally:
            for process in (proxy, backend_process):
                if process is not None:
                    process.terminate()
                    process.wait(10)
            stop_nginx(work)
    rps = statistics.median(r[0] for r in proxied)
    direct_rps = statistics.median(r[0] for r in direct)
    figures = {
        "rps": round(rps),
        "direct_rps": round(direct_rps),
        "ratio": round(rps / direct_rps, 3),
        "ratio_of_rounds": round(statistics.median(p[0] / d[0] for p, d in zip(proxied, direct, strict=True)), 3),
        "p99_ms": round(statistics.median(r[1] for r in proxied), 3),
        "direct_p99_ms": round(statistics.median(r[1] for r in direct), 3),
        "proxy_cpu_us_per_request": round(cpu / sum(r[2] for r in proxied) * 1e6, 2),
        "proxy_rss_mb": proxy_rss,
        "backend": backend,
        "loop": "uvloop" if _has_uvloop() else "asyncio",
        "connections": args.connections,
        "seconds": args.seconds,
        "rounds": args.rounds,
    }
    if not args.no_haproxy:
        reference = haproxy_ratio(args.seconds, args.rounds, args.connections)
        if reference is not None:
            print(f"haproxy reference: {reference}", file=sys.stderr)
            figures["haproxy_ratio"] = reference["ratio"]
            figures["haproxy_rps"] = reference["haproxy_rps"]
            figures["haproxy_direct_rps"] = reference["direct_rps"]
    figures["machine"] = machine()
    print(json.dumps(figures))


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    main()
