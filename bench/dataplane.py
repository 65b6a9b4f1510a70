#!/usr/bin/env python3
"""Data-plane benchmark: HTTP requests/s through one builtin-engine virtual server (its own process,
uvloop) against the same backend reached directly; then Tandem's HAProxy engine beside HAProxy configured by
hand; all with the same load generator.

The backend is nginx (nginx-light) when installed, else a small uvloop HTTP server; the load is
wrk over keep-alive connections (`wrk -t1 -cCONNS -dSECSs --latency`), the runs compared alternating for
ROUNDS rounds; figures are medians. With haproxy and nginx installed (and unless --no-haproxy), a lone
`tandem serve --engine haproxy` device serves TCP, HTTP (RULES host/path rules) and HTTPS virtual servers
beside a hand-written haproxy.cfg doing the same with the same binary (bench/dataplane_haproxy.py), and
the reference script haproxy-ratio (`common.ANCHORS`) gives HAProxy's ratio to direct on this machine.

Prints progress on stderr and, last, one JSON line:
- builtin engine: rps, direct_rps, ratio (rps / direct_rps, of the medians), ratio_of_rounds (median of the
  per-round ratios, as the HAProxy script computes its own), p99_ms, direct_p99_ms, proxy_cpu_us_per_request
  (the proxy process's CPU time per proxied request: steadier than requests/s on a busy machine),
  proxy_rss_mb, backend, loop;
- Tandem's HAProxy engine / HAProxy by hand, each with tandem_X_rps and hand_X_rps beside it:
  haproxy_engine_ratio (X = tcp), l7_ratio (X = l7: requests matching the last of 20 rules), tls_ratio
  (X = tls: HTTPS termination, keep-alive), tls_handshake_ratio (X = tls_handshake: `Connection: close`, a
  new TLS connection per request); failed_side_by_side (failed requests in those runs, expected 0);
- change_p50_ms, change_p99_ms: a pool member added through the SDK until it answers through the virtual
  server (new connections, each backend answering its own name), over CHANGES changes; change_write_p50_ms
  (the API write alone);
- failed_during_changes (of requests_during_changes): wrk's non-2xx/3xx answers and socket errors while
  CHANGES changes (members added, removed, weights) apply under load;
- haproxy_ratio, haproxy_rps, haproxy_direct_rps: the reference script; haproxy_version, rules, changes,
  connections, seconds, rounds, machine.

    .venv/bin/python bench/dataplane.py [--seconds 5] [--rounds 3] [--connections 50] [--changes 50]
                                        [--no-haproxy]
    (apt-get install nginx-light wrk haproxy; short: --seconds 3 --rounds 3)
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import anchor, cpu_seconds, machine, rss_mb
from dataplane_haproxy import IDENTIFIED, RULES, compare
from traffic import Backend, free_port, start_backend, start_runner, wrk

ANCHOR = anchor("haproxy-ratio")
VIRTUAL_ADDRESS = "127.0.100.1"


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


def builtin(work: Path, backend: Backend, args: argparse.Namespace) -> dict:
    """The builtin engine's figures: its virtual server beside the backend reached directly."""
    direct_url = f"http://127.0.0.1:{backend.port}/"
    vs_port = free_port(VIRTUAL_ADDRESS)
    proxy = start_runner(work, "proxy", "--listen", f"{VIRTUAL_ADDRESS}:{vs_port}",
                         "--member", f"127.0.0.1:{backend.port}")
    proxy_url = f"http://{VIRTUAL_ADDRESS}:{vs_port}/"
    try:
        wrk(direct_url, 1, args.connections)  # warm up both
        wrk(proxy_url, 1, args.connections)
        direct, proxied, cpu = [], [], 0.0
        for round_ in range(args.rounds):
            direct.append(wrk(direct_url, args.seconds, args.connections))
            used = cpu_seconds(proxy.pid)
            proxied.append(wrk(proxy_url, args.seconds, args.connections))
            cpu += cpu_seconds(proxy.pid) - used
            print(f"round {round_ + 1}: direct {direct[-1].rps:.0f} req/s p99 {direct[-1].p99_ms:.2f} ms, "
                  f"proxied {proxied[-1].rps:.0f} req/s p99 {proxied[-1].p99_ms:.2f} ms", file=sys.stderr)
        proxy_rss = rss_mb(proxy.pid)
    finally:
        proxy.terminate()
        proxy.wait(10)
    rps = statistics.median(r.rps for r in proxied)
    direct_rps = statistics.median(r.rps for r in direct)
    return {
        "rps": round(rps),
        "direct_rps": round(direct_rps),
        "ratio": round(rps / direct_rps, 3),
        "ratio_of_rounds": round(statistics.median(p.rps / d.rps for p, d in zip(proxied, direct, strict=True)), 3),
        "p99_ms": round(statistics.median(r.p99_ms for r in proxied), 3),
        "direct_p99_ms": round(statistics.median(r.p99_ms for r in direct), 3),
        "proxy_cpu_us_per_request": round(cpu / sum(r.requests for r in proxied) * 1e6, 2),
        "proxy_rss_mb": proxy_rss,
        "backend": backend.kind,
        "loop": "uvloop" if _has_uvloop() else "asyncio",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--changes", type=int, default=50, help="configuration changes timed, and under load")
    parser.add_argument("--no-haproxy", action="store_true",
                        help="skip everything HAProxy: Tandem's HAProxy engine, HAProxy by hand, the reference")
    args = parser.parse_args()
    if args.changes < 2:
        parser.error("--changes needs at least 2 (for a p99)")
    if not shutil.which("wrk"):
        raise SystemExit("needs wrk (apt-get install wrk)")
    with_haproxy = not args.no_haproxy and bool(shutil.which("haproxy"))
    if not args.no_haproxy and not with_haproxy:
        print("HAProxy runs skipped: no haproxy (apt-get install haproxy)", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="tandem-bench-dataplane-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)  # nginx workers may run as another user
        backend = start_backend(work, paths=RULES, identified=IDENTIFIED)
        try:
            figures = builtin(work, backend, args)
            if with_haproxy and backend.kind != "nginx":
                print("HAProxy engine runs skipped: they need nginx (apt-get install nginx-light)", file=sys.stderr)
            elif with_haproxy:
                figures |= compare(work, backend, args.seconds, args.rounds, args.connections, args.changes)
        finally:
            backend.stop()
    figures |= {"connections": args.connections, "seconds": args.seconds, "rounds": args.rounds}
    if with_haproxy:
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
