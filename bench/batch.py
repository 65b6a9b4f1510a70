#!/usr/bin/env python3
"""Batch benchmark: `POST /api/batch` of N operations (monitors, pools with 2 members each using them,
virtual servers using the pools, in that order) through the SDK, on one device, repeated; then batches
of the documented maximum (10,000 operations, bodies under 1 MiB): 10,000 monitors created, 10,000
pools using them created, the pools deleted, the monitors deleted (each delete checks that nothing
uses the monitor).

Per round: the creating batch, the same batch as `replace` (nothing changes: nothing is written),
a `replace` that changes every object, and the deleting batch (in reverse order). Prints progress
on stderr and, last, one JSON line with the median seconds of each (create_s, replace_same_s,
replace_changed_s, delete_s), the operations per batch, the seconds of the 10,000-operation batches
(batch_10k_create_s and batch_10k_delete_s: the monitors; batch_10k_pools_create_s,
batch_10k_pools_delete_s), and the machine.

    .venv/bin/python bench/batch.py [--operations N] [--rounds R] [--large 10000]
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import RunningDevice, machine
from tandem import Client


def objects(count: int, description: str = "") -> list[dict[str, Any]]:
    """`count` operations' worth of objects: (resource, name, body), dependencies first."""
    out = []
    for i in range(count // 3 + 1):
        out.append(("monitors", f"m{i}", {"type": "tcp", "description": description}))
        out.append(("pools", f"p{i}", {"monitor": f"m{i}", "description": description,
                                       "members": [{"address": f"10.1.{i // 256}.{i % 256}", "port": 80},
                                                   {"address": f"10.2.{i // 256}.{i % 256}", "port": 80}]}))
        out.append(("virtuals", f"v{i}", {"address": f"10.3.{i // 256}.{i % 256}", "port": 443, "pool": f"p{i}",
                                          "description": description}))
    return out[:count]


def batch(action: str, items: list[tuple[str, str, dict[str, Any]]]) -> list[dict[str, Any]]:
    return [{"action": action, "resource": resource, "partition": "Common", "name": name,
             "body": {} if action == "delete" else body} for resource, name, body in items]


def timed(client: Client, operations: list[dict[str, Any]]) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    result = client.batch(operations)
    elapsed = time.perf_counter() - started
    if result["applied"] != len(operations):
        raise SystemExit(f"applied {result['applied']} of {len(operations)}")
    return elapsed, result


def monitors_and_pools(count: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """`count` monitors, and `count` pools each using one (in Common, left out: the bodies stay under 1 MiB)."""
    monitors = [{"action": "create", "resource": "monitors", "name": f"m{i}", "body": {"type": "tcp"}}
                for i in range(count)]
    pools = [{"action": "create", "resource": "pools", "name": f"p{i}", "body": {"monitor": f"m{i}"}}
             for i in range(count)]
    return monitors, pools


def largest(client: Client, count: int) -> dict[str, float]:
    """Seconds of the batches of `count` operations: monitors and pools created, then deleted."""
    create_monitors, create_pools = monitors_and_pools(count)
    delete_pools = [{"action": "delete", "resource": "pools", "name": op["name"]} for op in create_pools]
    delete_monitors = [{"action": "delete", "resource": "monitors", "name": op["name"]} for op in create_monitors]
    out = {}
    for key, operations in (("batch_10k_create_s", create_monitors), ("batch_10k_pools_create_s", create_pools),
                            ("batch_10k_pools_delete_s", delete_pools), ("batch_10k_delete_s", delete_monitors)):
        out[key] = round(timed(client, operations)[0], 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--operations", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--large", type=int, default=10_000, help="operations of the largest batches")
    args = parser.parse_args()
    large: dict[str, float] = {}
    figures: dict[str, list[float]] = {"create_s": [], "replace_same_s": [], "replace_changed_s": [], "delete_s": []}
    with tempfile.TemporaryDirectory(prefix="tandem-bench-batch-") as work:
        device = RunningDevice("bench", Path(work) / "bench").start()
        try:
            client = Client(device.url, "admin", device.admin_password, fingerprint=device.fingerprint)
            client.device()  # log in and connect before timing
            items = objects(args.operations)
            for round_ in range(args.rounds):
                create_s, _ = timed(client, batch("create", items))
                same_s, same = timed(client, batch("replace", items))
                if same["commit"] is not None:
                    raise SystemExit("a replace that changes nothing wrote commits")
                changed_s, _ = timed(client, batch("replace", objects(args.operations, f"round {round_}")))
                delete_s, _ = timed(client, batch("delete", items[::-1]))
                for key, value in zip(figures, (create_s, same_s, changed_s, delete_s), strict=True):
                    figures[key].append(value)
                print(f"round {round_}: create {create_s:.3f} s, replace (same) {same_s:.3f} s, "
                      f"replace (changed) {changed_s:.3f} s, delete {delete_s:.3f} s", file=sys.stderr)
            large = largest(client, args.large)
            print(f"{args.large} operations: {large}", file=sys.stderr)
            client.close()
        finally:
            device.stop()
    print(json.dumps({**{key: round(statistics.median(values), 3) for key, values in figures.items()},
                      "operations": args.operations, "rounds": args.rounds, **large, "large_operations": args.large,
                      "machine": machine()}))


if __name__ == "__main__":
    main()
