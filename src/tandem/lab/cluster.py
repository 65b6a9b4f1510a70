"""The lab's cluster: device group `lab` of every lab device, formed by `tandem lab up`, and the devices'
failover state for the demo's traffic group."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tandem.lab.demo import LAB_GROUP
from tandem.lab.errors import LabError, Reporter
from tandem.lab.secrets import ADMIN_USER, read_password_file
from tandem.lab.state import LabDevice, LabState
from tandem.models import DEFAULT_PARTITION
from tandem.models.cluster import GROUP_LIMITS, IN_SYNC, SYNC_FAILOVER, SYNC_ONLY

if TYPE_CHECKING:
    from tandem.sdk import Client

MAX_SYNC_FAILOVER = GROUP_LIMITS[SYNC_FAILOVER]
MAX_SYNC_ONLY = GROUP_LIMITS[SYNC_ONLY]
PASSWORD_OPTION = "lab admin password file"
"""What a missing or unreadable admin password file is blamed on (the target of the error)."""


def lab_group_type(count: int) -> str:
    """The type of the lab's device group for `count` devices: sync-failover while it may be, else sync-only."""
    return SYNC_FAILOVER if count <= MAX_SYNC_FAILOVER else SYNC_ONLY


def admin_client(device: LabDevice, **options: Any) -> Client:
    """An SDK client of lab device `device`: admin, its password file, its fingerprint pinned (close it)."""
    from tandem.sdk import Client

    password = read_password_file(Path(device.password_file), option=PASSWORD_OPTION)
    return Client(device.url, ADMIN_USER, password, fingerprint=device.fingerprint, **options)


def form_cluster(reporter: Reporter, state: LabState, timeout: float) -> dict[str, Any]:
    """Form device group `lab` of every lab device (dev-1 the root) and wait until In Sync; its status.

    On failure the devices stay up (`tandem lab down` stops them) and LabError says what went wrong.
    """
    from tandem.sdk import TandemError

    clients: list[Client] = []
    try:
        for device in state.devices:
            clients.append(admin_client(device))
        if _group_exists(clients[0]):
            # the lab was started again on the data of an earlier one (`lab down` without --purge)
            return _manage_existing(reporter, clients, [d.name for d in state.devices], timeout)
        return _create(reporter, clients, timeout)
    except (TandemError, LabError) as exc:
        raise _form_failed(exc) from None
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                client.close()


def _group_exists(root: Client) -> bool:
    from tandem.sdk import DeviceGroup, TandemError

    try:
        DeviceGroup(name=LAB_GROUP).get(connection=root)
    except TandemError as exc:
        if exc.status_code != 404:
            raise
        return False
    return True


def _manage_existing(reporter: Reporter, clients: list[Client], names: list[str], timeout: float) -> dict[str, Any]:
    from tandem.sdk import ClusterManager

    if not reporter.json:
        reporter.note(f"cluster {LAB_GROUP} is in the devices' data already: waiting until it is In Sync")
    ClusterManager().manage_existing(devices=clients, device_group_name=LAB_GROUP,
                                     device_group_type=lab_group_type(len(clients)),
                                     device_group_partition=DEFAULT_PARTITION)
    return _wait_in_sync(clients, names, timeout)


def _create(reporter: Reporter, clients: list[Client], timeout: float) -> dict[str, Any]:
    from tandem.sdk import ClusterManager, DeviceGroup

    group_type = lab_group_type(len(clients))
    if not reporter.json:
        reporter.note(f"forming cluster {LAB_GROUP} ({group_type}) of {len(clients)} devices")
    ClusterManager().create(devices=clients, device_group_name=LAB_GROUP, device_group_type=group_type,
                            device_group_partition=DEFAULT_PARTITION, timeout=timeout,
                            progress=None if reporter.json else reporter.note)
    return DeviceGroup(name=LAB_GROUP).status(connection=clients[0])


def _form_failed(exc: Exception) -> LabError:
    message = getattr(exc, "message", str(exc))
    code = getattr(exc, "code", "cluster_failed")
    hint = ("; `tandem lab down --purge` stops them and removes their data" if code == "cluster_mismatch"
            else " (`tandem lab down` stops them)")
    return LabError(f"the devices are up, but forming cluster {LAB_GROUP} failed: {message}{hint}",
                    target=getattr(exc, "target", None), code=code)


def _wait_in_sync(clients: list[Client], names: list[str], timeout: float) -> dict[str, Any]:
    """Wait until every device sees group `lab` In Sync; the first device's view of it."""
    from tandem.sdk import DeviceGroup, TandemError

    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    for client, name in zip(clients, names, strict=True):
        while True:
            last = DeviceGroup(name=LAB_GROUP).status(connection=client)
            members = last.get("members") or []
            if last.get("status") == IN_SYNC and all(m.get("status") == IN_SYNC for m in members):
                break
            if time.monotonic() >= deadline:
                raise TandemError(None, "timeout", f"waited {timeout:g} s for {name} to see {LAB_GROUP} In Sync; "
                                                   f"it sees {last.get('status')}")
            time.sleep(0.1)
    return DeviceGroup(name=LAB_GROUP).status(connection=clients[0])


def failover_state(device: LabDevice, traffic_group: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """The device's entry for `traffic_group` in its failover status (logged in with the lab's admin
    password file), or None when it does not answer."""
    from tandem.sdk import Failover

    try:
        client = admin_client(device, timeout=timeout)
    except LabError:
        return None
    try:
        return Failover(client).traffic_group(traffic_group)
    except Exception:
        return None
    finally:
        with contextlib.suppress(Exception):
            client.close()


def failover_after_start(device: LabDevice, traffic_group: str, wait: float = 5.0) -> dict[str, Any] | None:
    """The failover state of a device that just started, once it hears an active device (at most `wait` s)."""
    deadline = time.monotonic() + wait
    while True:
        group = failover_state(device, traffic_group)
        if (group is not None and group.get("active_device")) or time.monotonic() >= deadline:
            return group
        time.sleep(0.2)
