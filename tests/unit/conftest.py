"""Fixtures of the unit tests: a configuration service on a store of its own."""

from collections.abc import Callable, Iterator

import pytest

from tandem.config import ConfigService, integrity
from tandem.models import Partition
from tandem.store import Store

MIRROR = "mirror is a peer cluster's mirror"


@pytest.fixture
def mirrored_config(tmp_path) -> Iterator[Callable[[Callable[[ConfigService], None]], ConfigService]]:
    """Makes a configuration service with partitions Common and mirror, `prepare` run on it, then mirror
    made read-only (as a peer cluster's mirror is)."""
    stores: list[Store] = []

    def make(prepare: Callable[[ConfigService], None] = lambda service: None) -> ConfigService:
        store = Store(tmp_path / f"t{len(stores)}.db", index_of=integrity.references)
        stores.append(store)
        service = ConfigService(store)
        for name in ("Common", "mirror"):
            service.create(Partition(name=name))
        prepare(service)
        service.read_only = lambda partition: MIRROR if partition == "mirror" else None
        return service

    yield make
    for store in stores:
        store.close()
