#!/usr/bin/env python3
"""Device API benchmark: 10,000 pool members created through the SDK over one keep-alive
connection, the full list read back, one member read many times, and the daemon's memory.

Prints progress on stderr and, last, one JSON line with creates_per_s, list_10k_s,
get_median_ms, rss_idle_mb, rss_loaded_mb (and the machine).

    .venv/bin/python bench/api.py [--members N]
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from common import RunningDevice, machine, percentile, rss_mb
from tandem import Client, Pool, PoolMember


def member_address(i: int) -> str:
    return f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--gets", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tandem-bench-api-") as work:
        device = RunningDevice("bench", Path(work) / "bench").start()
        try:
            assert device.process is not None
            time.sleep(1.0)
            rss_idle = rss_mb(device.process.pid)
            client = Client(device.url, "admin", device.admin_password, fingerprint=device.fingerprint)
            Pool(name="bench", connection=client).post()

            started = time.perf_counter()
            for i in range(args.members):
                PoolMember("Common", "bench", address=member_address(i), port=80, connection=client).post()
            create_s = time.perf_counter() - started
            print(f"created {args.members} members in {create_s:.2f} s", file=sys.stderr)

            started = time.perf_counter()
            members = list(PoolMember.get_collection("Common", "bench", connection=client))
            list_s = time.perf_counter() - started
            if len(members) != args.members:
                raise SystemExit(f"listed {len(members)} members, expected {args.members}")

            samples = []
            for i in range(args.gets):
                member = PoolMember("Common", "bench", address=member_address(i * 7 % args.members), port=80,
                                    connection=client)
                started = time.perf_counter()
                member.get()
                samples.append((time.perf_counter() - started) * 1000)
            rss_loaded = rss_mb(device.process.pid)
            client.close()
        finally:
            device.stop()
    print(json.dumps({
        "creates_per_s": round(args.members / create_s),
        "list_10k_s": round(list_s, 3),
        "get_median_ms": round(percentile(samples, 0.5), 3),
        "rss_idle_mb": rss_idle,
        "rss_loaded_mb": rss_loaded,
        "members": args.members,
        "machine": machine(),
    }))


if __name__ == "__main__":
    main()
