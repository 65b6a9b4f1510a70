"""What the management process would send its data plane, for a store alone (no trust domain, no failover)."""

from pathlib import Path

from tandem.dataplane.service import DataPlane, Desired
from tandem.store import Store


class _Domain:
    def traffic_groups(self) -> list:
        return []


class _Failover:
    def set_virtual_addresses(self, by_traffic_group: dict, standalone: tuple) -> None:
        pass


def desired_of(store: Store, run_dir: Path) -> Desired:
    """`DataPlane.desired()` of a device holding `store`, in no traffic group."""
    return DataPlane(store, _Domain(), _Failover(), run_dir).desired()  # type: ignore[arg-type]
