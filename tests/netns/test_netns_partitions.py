"""Sync integrity under real network partitions: three devices on a bridge cut apart, written on every
side, healed and checked against the documented rules (the workload and checker: `partitionlab.py`).
The issue's reproductions first, then rounds drawn from a seed (printed; TANDEM_PARTITION_SEED replays).

Needs root and iproute2 (skipped otherwise; CI runs as root).
"""

import os
import random
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from netlab import available, check, print_logs
from partitionlab import PartitionLab, Round

pytestmark = pytest.mark.skipif(available() is not None, reason=available() or "")

SEED = int(os.environ.get("TANDEM_PARTITION_SEED") or random.randrange(1 << 32))
CONVERGE_BOUND = 5.0
"""Seconds from the heal to identical configuration everywhere (the issue saw 1-2 s)."""
SEEN_BOUND = 2.0
"""Seconds from the cut until every device's status shows it (members go Disconnected after 1 s of
silence; a heartbeat timeout is 1 s by default)."""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PartitionLab]:
    print(f"partition rounds seeded with TANDEM_PARTITION_SEED={SEED}", file=sys.stderr)
    with PartitionLab(Path(tmp_path_factory.mktemp("partitions")), SEED) as lab:
        try:
            yield lab
        finally:
            print_logs(lab.hosts)


def assert_clean(result: Round) -> None:
    detail = f"round {result.number} (seed {SEED}, split {result.split}, killed {result.killed})"
    assert not result.mismatches, f"{detail}: " + "\n".join(result.mismatches)
    assert not result.lost, f"{detail}: acknowledged writes lost without a conflict record: {result.lost}"
    assert result.converge_s is not None and result.converge_s < CONVERGE_BOUND, \
        f"{detail}: identical configuration {result.converge_s} s after the heal"
    assert result.detect_s is not None and result.detect_s < SEEN_BOUND, f"{detail}: cut seen after {result.detect_s} s"


def test_the_reproductions_end_as_the_rules_say(lab: PartitionLab) -> None:
    """{a} | {b, c}: a member added while its pool is deleted (both orders), two replacements of one
    member list, delete against a description (both orders), and the other pairs that met a pool's
    members; then pools created again under the deleted names start empty everywhere."""
    pairs = [("add", "delete"), ("delete", "add"), ("replace", "replace"), ("delete", "describe"),
             ("describe", "delete"), ("add", "add"), ("replace", "add"), ("add", "replace"), ("remove", "describe")]
    result = lab.run_round(0, split=(("a",), ("b", "c")), pairs=pairs)
    assert_clean(result)
    assert result.conflicts_expected == result.conflicts_everywhere >= 6
    c = lab.host("c")
    deleted = sorted({op.pool for op in result.ops} - set(lab.configuration(c)["pools"]))
    assert len(deleted) == 3
    for name in deleted:
        check(c.api.post("/api/pools", json={"name": name}), 201)
    lab.wait_in_sync(10)
    for host in lab.hosts:
        for name in deleted:
            assert check(host.api.get(f"/api/pools/Common/{name}"), 200).json()["members"] == [], host.name


@pytest.mark.parametrize("number", [1, 2, 3])
def test_randomized_rounds(lab: PartitionLab, number: int) -> None:
    assert_clean(lab.run_round(number, kill=number == 2))
