"""Fixtures shared by every test: real device daemons on loopback."""

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devices import RunningDevice

pytest_plugins = ["cluster_fixtures"]
"""Clusters and peered sites (tests/cluster is on the path), for the cluster and fidelity tests."""

DeviceFactory = Callable[..., RunningDevice]


@pytest.fixture
def device_factory(tmp_path: Path) -> Iterator[DeviceFactory]:
    """Start devices (`factory("dev-2")`); every one is stopped when the test ends."""
    started: list[RunningDevice] = []

    def factory(name: str = "dev-1", **kwargs) -> RunningDevice:
        device = RunningDevice(name=name, data_dir=tmp_path / name, **kwargs)
        started.append(device)
        return device.start()

    yield factory
    for device in started:
        device.stop()


@pytest.fixture
def device(device_factory: DeviceFactory) -> RunningDevice:
    """One fresh device, admin password `devices.ADMIN_PASSWORD`."""
    return device_factory("dev-1")


@pytest.fixture(scope="module")
def shared_device(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDevice]:
    """One device for a whole test module: for tests that only add uniquely named objects."""
    device = RunningDevice(name="shared", data_dir=tmp_path_factory.mktemp("shared") / "shared").start()
    yield device
    device.stop()
