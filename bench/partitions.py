#!/usr/bin/env python3
"""Sync integrity benchmark: randomized rounds of real network partitions of a three-device sync group,
written on every side, healed and checked (the workload and checker of tests/netns/partitionlab.py):
each round a cut (one device off the other two, or all three apart), concurrent changes of the same
pools on two sides, each side's own new pool, a reference and a destination that clash once merged;
every other round a kill -9 of a device of the larger side after its writes (started again before the
heal). Needs root and iproute2.

Progress on stderr; last, one JSON line: rounds, writes_acknowledged, lost_without_conflict (goal 0),
rounds_not_converged (0), rounds_with_mismatches (merged state or reports not as the rules say: 0),
heal_to_identical_median_s / _max_s (heal to identical configuration on every device),
conflicts_reported_everywhere / conflicts_expected (conflict records present on every device, of
those the rules expect), kills, seed, machine.

    .venv/bin/python bench/partitions.py [--rounds 8] [--seed N]
"""

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

from common import machine

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "netns"))

import netlab  # noqa: E402
from partitionlab import PartitionLab, summary  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--contested", type=int, default=16, help="pools changed on two sides per round")
    args = parser.parse_args()
    if netlab.available() is not None:
        sys.exit(f"bench/partitions.py: {netlab.available()}")
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    print(f"seed {seed}", file=sys.stderr, flush=True)
    rounds = []
    with tempfile.TemporaryDirectory(prefix="tandem-partitions-") as work, PartitionLab(Path(work), seed) as lab:
        for number in range(1, args.rounds + 1):
            result = lab.run_round(number, contested=args.contested, kill=number % 2 == 0)
            rounds.append(result)
            print(f"round {number}: split {result.split}, {result.writes} writes, killed {result.killed}, "
                  f"converged in {result.converge_s} s, {result.conflicts_everywhere}/{result.conflicts_expected} "
                  f"conflicts everywhere, lost {result.lost}, mismatches {result.mismatches}",
                  file=sys.stderr, flush=True)
    print(json.dumps(summary(rounds) | {"seed": seed, "machine": machine()}))


if __name__ == "__main__":
    main()
