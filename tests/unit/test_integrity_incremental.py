"""Violations worked out again only for what a change concerns (`violations_after`) are those of the whole scan,
whatever merged replicas stored: random changes written unchecked, as an older or partitioned peer's can be."""

import random

import pytest

from tandem.config import integrity
from tandem.config.integrity import violations, violations_after
from tandem.models import Partition
from tandem.store import GLOBAL, Store
from unchecked_writes import write_randomly


@pytest.mark.parametrize("seed", range(8))
def test_violations_after_changes_are_those_of_the_whole_scan(tmp_path, seed):
    rng = random.Random(seed)
    store = Store(tmp_path / "s.db", index_of=integrity.references)
    changed: list[tuple[str, str, str]] = []
    store.on_keys.append(changed.extend)
    with store.transaction() as txn:
        txn.put(Partition.kind, GLOBAL, "Common", {"name": "Common"})
    found = frozenset(violations(store))
    seen_rules = set()
    try:
        for step in range(300):
            changed.clear()
            write_randomly(store, rng)
            found = violations_after(store, found, changed)
            whole = frozenset(violations(store))
            assert found == whole, f"step {step}: {sorted(found ^ whole, key=str)}"
            seen_rules |= {v.rule for v in whole}
    finally:
        store.close()
    assert seen_rules == {"partition", "reference", "cross-partition", "destination"}  # each rule was exercised
