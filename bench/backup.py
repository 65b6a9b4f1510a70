#!/usr/bin/env python3
"""Backup and restore benchmark: one device holding N configuration objects (monitors, pools with two members,
virtual servers: `batch.objects`), then R rounds of: `tandem backup` (a separate process, as an operator runs
it: log in, the device copies its store and seals the archive, the file written), the device stopped and its
data directory destroyed, `tandem restore` of the archive into it (a separate process), and the device started
again until it answers with every object.

Prints progress on stderr and, last, one JSON line: the medians of backup_s, restore_s and restore_to_serving_s
(restore, start and the first answer with every object), the objects, the archive's size, and the machine.

    .venv/bin/python bench/backup.py [--objects 10000] [--rounds 3]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from batch import batch, objects
from common import RunningDevice, machine

PASSPHRASE = "benchmark passphrase"
BATCH_SIZE = 2500
"""Operations per batch while filling the device (bodies stay under the API's 1 MiB)."""


def tandem(*args: str, env: dict[str, str]) -> float:
    """Seconds `python -m tandem ARGS` took; exits on its failure."""
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "tandem", *args], env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"tandem {' '.join(args)} failed: {result.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="tandem-bench-backup-"))
    device = RunningDevice(name="dev-1", data_dir=base / "dev-1").start()
    try:
        client = device.client()
        made = objects(args.objects)
        operations = batch("create", made)
        for first in range(0, len(operations), BATCH_SIZE):
            client.batch(operations[first:first + BATCH_SIZE])
        last = f"/api/{made[-1][0]}/Common/{made[-1][1]}"
        print(f"device holds {len(made)} monitors, pools and virtual servers", file=sys.stderr)
        secret = base / "passphrase"
        secret.write_text(PASSPHRASE + "\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("TANDEM_")}
        env |= {"TANDEM_PASSWORD": device.admin_password, "COLUMNS": "200"}
        backups, restores, serving, sizes = [], [], [], []
        for round_number in range(args.rounds):
            archive = base / f"round-{round_number}.backup"
            backups.append(tandem("--url", device.url, "--fingerprint", device.fingerprint, "backup", "--file",
                                  str(archive), "--passphrase-file", str(secret), env=env))
            sizes.append(archive.stat().st_size)
            device.stop()
            shutil.rmtree(device.data_dir)
            started = time.perf_counter()
            restores.append(tandem("restore", str(archive), "--data-dir", str(device.data_dir),
                                   "--passphrase-file", str(secret), env=env))
            device.start()
            device.client().request("GET", last)  # the last object made: TandemError if it is missing
            serving.append(time.perf_counter() - started)
            print(f"round {round_number + 1}: backup {backups[-1]:.2f} s, restore {restores[-1]:.2f} s, serving again"
                  f" {serving[-1]:.2f} s after the restore began", file=sys.stderr)
    finally:
        device.stop()
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps({
        "backup_s": round(statistics.median(backups), 3), "restore_s": round(statistics.median(restores), 3),
        "restore_to_serving_s": round(statistics.median(serving), 3), "objects": args.objects,
        "archive_mb": round(statistics.median(sizes) / 1e6, 2), "rounds": args.rounds, "machine": machine()}))


if __name__ == "__main__":
    main()
