"""Fixtures of the SDK tests that need a cluster: two real devices formed through the SDK's ClusterManager."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from devices import RunningDevice
from tandem import Client, ClusterManager


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Client]]:
    """dev-1 and dev-2 in sync-failover group `dg`; a pinned admin Client for each."""
    base: Path = tmp_path_factory.mktemp("sdk-pair")
    devices = [RunningDevice(name=name, data_dir=base / name) for name in ("dev-1", "dev-2")]
    clients: list[Client] = []
    try:
        for device in devices:
            device.start()
        clients = [device.client() for device in devices]
        ClusterManager().create(devices=clients, device_group_name="dg", timeout=30)
        yield clients
    finally:
        for client in clients:
            client.close()
        for device in devices:
            device.stop()
