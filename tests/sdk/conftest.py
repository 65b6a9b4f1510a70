"""Fixtures of the SDK tests that need a cluster: two real devices formed through the SDK's ClusterManager."""

from collections.abc import Iterator

import pytest

from devices import running
from tandem import Client, ClusterManager


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Client]]:
    """dev-1 and dev-2 in sync-failover group `dg`; a pinned admin Client for each."""
    with running(tmp_path_factory.mktemp("sdk-pair"), ("dev-1", "dev-2")) as clients:
        ClusterManager().create(devices=clients, device_group_name="dg", timeout=30)
        yield clients
