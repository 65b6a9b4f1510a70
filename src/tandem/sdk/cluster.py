"""ClusterManager: form, check, grow, shrink and tear down a cluster (a device group and its devices).

A cluster is made of three parts, as on BIG-IP: the trust domain (devices that exchanged
certificates), a device group of those devices (the configuration they share) and the manager
that drives both through the devices' REST APIs.

Create a cluster and manage it:

    devices = [Client("https://10.0.0.1:8443", "admin", pw1, fingerprint=fp1),
               Client("https://10.0.0.2:8443", "admin", pw2, fingerprint=fp2)]
    manager = ClusterManager()
    manager.create(devices=devices, device_group_name="dg", device_group_type="sync-failover",
                   device_group_partition="Common")
    assert manager.cluster.devices == devices

Manage an existing cluster (checked on every device):

    manager = ClusterManager(devices=devices, device_group_name="dg",
                             device_group_type="sync-failover", device_group_partition="Common")
    manager.add_devices(third)
    manager.remove_devices(third)
    manager.teardown()

The first device is the root: it adds the others to its trust domain (with each Client's URL,
username, password and pinned fingerprint) and creates the group. Every change waits until each
device of the cluster sees the expected result, polling every 0.1 s, and raises TandemError
(`code="timeout"`) with the last state seen when that does not happen in time. `create` checks
what it can before its first change and undoes its changes when a later step fails.
"""

import contextlib
import time
from collections import namedtuple
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from pydantic import ValidationError

from tandem.models import DEFAULT_PARTITION
from tandem.models.cluster import GROUP_LIMITS, GROUP_TYPES, IN_SYNC, SYNC_FAILOVER
from tandem.models.cluster import DeviceGroup as DeviceGroupModel
from tandem.models.fingerprints import format_fingerprint
from tandem.sdk.client import Client
from tandem.sdk.clustering import DeviceGroup, TrustedDevice
from tandem.sdk.errors import TandemError
from tandem.sdk.resources import Partition

Cluster = namedtuple("Cluster", "device_group_name device_group_type device_group_partition devices")
"""A device group and its devices (the SDK Clients given), as a ClusterManager sees it."""

Progress = Callable[[str], None] | None
"""Called with one short line per step of a long operation (the CLI prints them)."""

POLL_INTERVAL = 0.1
DEFAULT_TIMEOUT = 60.0
_MANAGE_KWARGS = ("devices", "device_group_name", "device_group_type", "device_group_partition")
_REQUIRED_KWARGS = ("devices", "device_group_name")


class ClusterManager:
    """Manage a cluster of Tandem devices; `ClusterManager()` is empty, `ClusterManager(devices=...,
    device_group_name=..., device_group_type="sync-failover", device_group_partition="Common")`
    manages an existing one after checking it on every device.

    `cluster` is the managed `Cluster`, or None. `devices` are SDK `Client`s with a username and
    password (the root needs them to add a device to its trust domain); the first is the root.
    A cluster of one device is allowed (a group with a single member); BIG-IP wants two.
    """

    def __init__(self, **kwargs: Any) -> None:
        self.cluster: Cluster | None = None
        self._names: dict[Client, str] = {}
        if kwargs:
            self.manage_existing(**kwargs)

    def __repr__(self) -> str:
        if self.cluster is None:
            return "ClusterManager(cluster=None)"
        names = ", ".join(self._names.get(c, c.url) for c in self.cluster.devices)
        return (
            f"ClusterManager({self.cluster.device_group_name!r}, {self.cluster.device_group_type}, "
            f"partition {self.cluster.device_group_partition}, devices [{names}])"
        )

    # --- an existing cluster -----------------------------------------------------------

    def manage_extant(self, **kwargs: Any) -> Cluster:
        """f5-sdk's name of `manage_existing`."""
        return self.manage_existing(**kwargs)

    def manage_existing(self, **kwargs: Any) -> Cluster:
        """Check that the cluster described by `kwargs` exists as described on every device, then manage it.

        On each device the group must exist with that type, sync that partition, and have exactly
        the given devices as members; TandemError (`cluster_mismatch`) names every difference.
        """
        unknown = sorted(set(kwargs) - set(_MANAGE_KWARGS))
        if unknown:
            raise _invalid(f"unknown argument(s) {', '.join(unknown)}; expected {', '.join(_MANAGE_KWARGS)}")
        missing = [key for key in _REQUIRED_KWARGS if kwargs.get(key) is None]
        if missing:
            raise _invalid(f"managing an existing cluster needs {' and '.join(missing)}", missing[0])
        self._refuse_if_managing()
        devices = kwargs["devices"]
        group_name = kwargs["device_group_name"]
        group_type = kwargs.get("device_group_type") or SYNC_FAILOVER
        partition = kwargs.get("device_group_partition") or DEFAULT_PARTITION
        _check_arguments(devices, group_name, group_type, partition)
        names = self._device_names(devices)
        expected = set(names)
        problems: list[str] = []
        for client, name in zip(devices, names, strict=True):
            try:
                group = DeviceGroup(name=group_name).get(connection=client)
            except TandemError as exc:
                if exc.status_code != 404:
                    raise
                problems.append(f"{name} has no device group {group_name!r}")
                continue
            found_type = getattr(group, "type", None)
            if found_type != group_type:
                problems.append(f"on {name}, {group_name!r} is of type {found_type}, not {group_type}")
            partitions = list(getattr(group, "partitions", None) or [])
            if partition not in partitions:
                problems.append(
                    f"on {name}, {group_name!r} syncs partitions {_names_list(partitions)}, not {partition}"
                )
            members = set(getattr(group, "members", None) or [])
            if members != expected:
                detail = []
                if expected - members:
                    detail.append(f"not members: {_names_list(expected - members)}")
                if members - expected:
                    detail.append(f"members not given: {_names_list(members - expected)}")
                problems.append(
                    f"on {name}, the members of {group_name!r} are {_names_list(members)}, "
                    f"the devices given are {_names_list(names)} ({'; '.join(detail)})"
                )
        if problems:
            raise TandemError(
                None,
                "cluster_mismatch",
                f"the devices do not form cluster {group_name!r} as described: {'; '.join(problems)}",
                group_name,
            )
        self.cluster = Cluster(group_name, group_type, partition, devices)
        return self.cluster

    # --- create and teardown -----------------------------------------------------------

    def create(
        self,
        *,
        devices: Sequence[Client],
        device_group_name: str,
        device_group_type: str = SYNC_FAILOVER,
        device_group_partition: str = DEFAULT_PARTITION,
        timeout: float = DEFAULT_TIMEOUT,
        progress: Progress = None,
    ) -> Cluster:
        """Form a cluster: the root (first device) trusts the others, creates the group with every
        device as a member and `partitions=[device_group_partition]`, then waits until each device
        sees the group In Sync. Devices already trusted by the root are not added again.

        Refused (TandemError) before any change when this manager already manages a cluster, with no
        devices, the same device twice, more devices than the group type holds, a group name or
        partition the model refuses, a name taken, a partition missing or synced by another group, a
        device unreachable or in another trust domain. When a later step fails, what was done is
        undone (the group deleted, the devices added removed, the last first) and the error raised;
        its message says so if the undo failed too.
        """
        self._refuse_if_managing()
        _check_arguments(devices, device_group_name, device_group_type, device_group_partition)
        deadline = time.monotonic() + timeout
        names = self._device_names(devices)
        root, root_name = devices[0], names[0]
        _say(progress, f"root device: {root_name} ({root.url})")
        _check_new_group(root, root_name, device_group_name, device_group_type, device_group_partition, names)
        to_add = self._check_trust(root, list(zip(devices[1:], names[1:], strict=True)), progress)
        added: list[tuple[Client, str]] = []
        created = False
        try:
            for client, name in to_add:
                self._trust_one(root, client, name, progress)
                added.append((client, name))
            _say(progress, f"creating device group {device_group_name} ({device_group_type}) on {root_name}")
            DeviceGroup(
                name=device_group_name,
                type=device_group_type,
                members=names,
                partitions=[device_group_partition],
            ).post(connection=root)
            created = True
            self._wait_in_sync(devices, device_group_name, names, deadline, timeout, progress)
        except Exception as error:
            self._undo_create(error, devices, device_group_name if created else None, added, timeout, progress)
            raise
        self.cluster = Cluster(device_group_name, device_group_type, device_group_partition, devices)
        _say(progress, f"cluster {device_group_name} is In Sync on {len(devices)} device(s)")
        return self.cluster

    def teardown(self, *, timeout: float = DEFAULT_TIMEOUT, progress: Progress = None) -> None:
        """Delete the device group, then remove every device but the root from the trust domain, and
        wait until each removed device is alone in a domain of its own. Afterwards `cluster` is None."""
        cluster = self._require_cluster()
        deadline = time.monotonic() + timeout
        devices = list(cluster.devices)
        names = self._device_names(devices)
        group_name = cluster.device_group_name
        self._dismantle(devices, group_name, list(zip(devices[1:], names[1:], strict=True)), deadline, timeout,
                        progress)
        self.cluster = None
        _say(progress, f"cluster {group_name} is torn down")

    # --- grow and shrink ---------------------------------------------------------------

    def add_devices(self, *clients: Client, timeout: float = DEFAULT_TIMEOUT, progress: Progress = None) -> Cluster:
        """Add devices to the cluster: trusted by the root, made members of the group, then every
        device waited for until it sees the group In Sync."""
        cluster = self._require_cluster()
        if not clients:
            raise _invalid("add_devices needs at least one device", "devices")
        devices = list(cluster.devices)
        _check_arguments([*devices, *clients], cluster.device_group_name, cluster.device_group_type,
                         cluster.device_group_partition)
        deadline = time.monotonic() + timeout
        all_names = self._device_names([*devices, *clients])
        new_names = all_names[len(devices):]
        root = devices[0]
        for client, name in self._check_trust(root, list(zip(clients, new_names, strict=True)), progress):
            self._trust_one(root, client, name, progress)
        group = DeviceGroup(name=cluster.device_group_name).get(connection=root)
        members = list(getattr(group, "members", None) or [])
        group.members = members + [name for name in new_names if name not in members]
        _say(progress, f"adding {', '.join(new_names)} to device group {cluster.device_group_name}")
        group.patch(connection=root)
        everyone = [*devices, *clients]
        self._wait_in_sync(everyone, cluster.device_group_name, all_names, deadline, timeout, progress)
        self.cluster = cluster._replace(devices=everyone)
        return self.cluster

    def remove_devices(
        self, *clients: Client, timeout: float = DEFAULT_TIMEOUT, progress: Progress = None
    ) -> Cluster:
        """Remove devices from the cluster: out of the group first, then out of the trust domain
        (each then alone in a domain of its own); the others are waited for until In Sync.
        The root (the first device) cannot be removed."""
        cluster = self._require_cluster()
        if not clients:
            raise _invalid("remove_devices needs at least one device", "devices")
        for client in clients:
            if not isinstance(client, Client):
                raise _invalid(f"devices must be tandem.Client objects, not {type(client).__name__}", "devices")
        deadline = time.monotonic() + timeout
        devices = list(cluster.devices)
        names = self._device_names(devices)
        root_name = names[0]
        removed: list[str] = []
        for client in clients:
            name = self._device_name(client)
            if name == root_name:
                raise _invalid(f"{name} is the root of cluster {cluster.device_group_name}; it cannot be removed",
                               name)
            if name not in names:
                raise _invalid(f"{name} is not a device of cluster {cluster.device_group_name} "
                               f"(devices: {', '.join(names)})", name)
            if name in removed:
                raise _invalid(f"{name} is given twice", name)
            removed.append(name)
        root = devices[0]
        group_name = cluster.device_group_name
        group = DeviceGroup(name=group_name).get(connection=root)
        group.members = [m for m in (getattr(group, "members", None) or []) if m not in removed]
        _say(progress, f"removing {', '.join(removed)} from device group {group_name}")
        group.patch(connection=root)
        leaving = [(d, n) for d, n in zip(devices, names, strict=True) if n in removed]
        staying = [(d, n) for d, n in zip(devices, names, strict=True) if n not in removed]
        self._wait_left_group([d for d, _ in leaving], group_name, deadline, timeout, progress)
        self._untrust(root, leaving, deadline, timeout, progress)
        self._wait_in_sync([d for d, _ in staying], group_name, [n for _, n in staying], deadline, timeout,
                           progress)
        self.cluster = cluster._replace(devices=[d for d, _ in staying])
        return self.cluster

    # --- steps -------------------------------------------------------------------------

    def _refuse_if_managing(self) -> None:
        if self.cluster is not None:
            raise TandemError(
                None,
                "invalid_state",
                f"this ClusterManager already manages cluster {self.cluster.device_group_name!r}: "
                "tear it down first or use another ClusterManager",
            )

    def _require_cluster(self) -> Cluster:
        if self.cluster is None:
            raise TandemError(
                None, "invalid_state", "this ClusterManager manages no cluster: create() one or manage an existing one"
            )
        return self.cluster

    def _device_name(self, client: Client) -> str:
        """The device's name (`GET /api/device`), asked once per Client."""
        name = self._names.get(client)
        if name is None:
            name = str(client.device()["name"])
            self._names[client] = name
        return name

    def _device_names(self, devices: Sequence[Client]) -> list[str]:
        names = [self._device_name(client) for client in devices]
        seen: dict[str, Client] = {}
        for client, name in zip(devices, names, strict=True):
            if name in seen:
                raise _invalid(f"{seen[name].url} and {client.url} are the same device ({name})", name)
            seen[name] = client
        return names

    def _check_trust(
        self, root: Client, clients: list[tuple[Client, str]], progress: Progress
    ) -> list[tuple[Client, str]]:
        """Read the trust view of the root and of each device; the devices the root must add, or
        TandemError when one of them cannot join (another domain, a name taken, no credentials)."""
        root_name = self._device_name(root)
        root_view = root.trust()
        trusted = {str(device.get("name")) for device in root_view.get("devices", ())}
        to_add = []
        for client, name in clients:
            view = client.trust()
            if view.get("domain_id") == root_view.get("domain_id"):
                _say(progress, f"{name} is already trusted by {root_name}")
                continue
            others = sorted({str(device.get("name")) for device in view.get("devices", ())} - {name})
            if others:
                raise TandemError(409, "conflict", f"{name} already belongs to a trust domain with "
                                  f"{', '.join(others)}; remove it from there first", name)
            if name in trusted:
                raise TandemError(409, "conflict", f"{root_name} already trusts a device named {name}, and the "
                                  f"{name} at {client.url} is not in its trust domain", name)
            if not client.username or not client.password:
                raise _invalid(
                    f"{client.url}: adding {name} to the trust domain needs its admin username and password, "
                    "and this Client has none",
                    name,
                )
            to_add.append((client, name))
        return to_add

    def _trust_one(self, root: Client, client: Client, name: str, progress: Progress) -> None:
        """Have the root add the device to its trust domain (pinning the Client's fingerprint)."""
        if not (fingerprint := client.fingerprint):
            shown = client.device()
            fingerprint = shown.get("management_fingerprint") or shown.get("fingerprint")
        _say(progress, f"{self._device_name(root)} adds {name} ({client.url}) to its trust domain")
        TrustedDevice.add(
            client.url,
            client.username,
            client.password,
            format_fingerprint(fingerprint) if fingerprint else None,
            connection=root,
        )

    def _undo_create(
        self,
        error: Exception,
        devices: Sequence[Client],
        group_name: str | None,
        added: list[tuple[Client, str]],
        timeout: float,
        progress: Progress,
    ) -> None:
        """After a failed create, delete the group it created and remove the devices it added (the last
        first); a failure of this undo is told in `error`, which the caller raises."""
        if group_name is None and not added:
            return
        try:
            _say(progress, f"create failed ({error}); undoing its changes")
            self._dismantle(devices, group_name, added[::-1], time.monotonic() + timeout, timeout, progress)
        except Exception as undo_error:
            note = f"undoing the changes failed too, so some may remain: {undo_error}"
            if isinstance(error, TandemError):
                error.message = f"{error.message} ({note})"
            else:
                error.add_note(note)

    def _dismantle(
        self,
        devices: Sequence[Client],
        group_name: str | None,
        leaving: list[tuple[Client, str]],
        deadline: float,
        timeout: float,
        progress: Progress,
    ) -> None:
        """Delete the group (if any) through the root, wait until no device has it, then remove `leaving`
        from the trust domain."""
        root = devices[0]
        if group_name is not None:
            _say(progress, f"deleting device group {group_name} on {self._device_name(root)}")
            with _gone_already_ok():
                DeviceGroup(name=group_name).delete(connection=root)
            self._wait_group_gone(devices, group_name, deadline, timeout, progress)
        self._untrust(root, leaving, deadline, timeout, progress)

    def _untrust(
        self, root: Client, leaving: list[tuple[Client, str]], deadline: float, timeout: float, progress: Progress
    ) -> None:
        """Remove devices from the root's trust domain, then wait until each is alone in its own."""
        for _client, name in leaving:
            _say(progress, f"removing {name} from the trust domain")
            with _gone_already_ok():
                TrustedDevice(name=name).delete(connection=root)
        for client, name in leaving:

            def alone(client: Client = client, name: str = name) -> tuple[bool, str]:
                others = sorted({str(d.get("name")) for d in client.trust().get("devices", ())} - {name})
                return (not others, f"{name} still trusts {', '.join(others)}")

            _wait(alone, deadline, timeout, f"{name} to be alone in its trust domain")
            _say(progress, f"{name} is alone in its own trust domain")

    def _wait_in_sync(
        self,
        devices: Sequence[Client],
        group_name: str,
        names: Iterable[str],
        deadline: float,
        timeout: float,
        progress: Progress,
    ) -> None:
        """Wait until every device sees the group In Sync with exactly `names` as members."""
        expected = set(names)
        for client in devices:
            name = self._device_name(client)

            def in_sync(client: Client = client, name: str = name) -> tuple[bool, str]:
                try:
                    status = DeviceGroup(name=group_name).status(connection=client)
                except TandemError as exc:
                    if exc.status_code == 404:
                        return False, f"{name} has no device group {group_name!r} yet"
                    raise
                return _describe_status(name, status, expected)

            _wait(in_sync, deadline, timeout, f"device group {group_name} to be In Sync")
            _say(progress, f"{name} sees {group_name} In Sync")

    def _wait_group_gone(
        self, devices: Sequence[Client], group_name: str, deadline: float, timeout: float, progress: Progress
    ) -> None:
        for client in devices:
            name = self._device_name(client)

            def gone(client: Client = client, name: str = name) -> tuple[bool, str]:
                if _group_or_none(client, group_name) is None:
                    return True, ""
                return False, f"{name} still has device group {group_name!r}"

            _wait(gone, deadline, timeout, f"device group {group_name} to be deleted everywhere")
        _say(progress, f"device group {group_name} is deleted on every device")

    def _wait_left_group(
        self, devices: Sequence[Client], group_name: str, deadline: float, timeout: float, progress: Progress
    ) -> None:
        for client in devices:
            name = self._device_name(client)

            def left(client: Client = client, name: str = name) -> tuple[bool, str]:
                group = _group_or_none(client, group_name)
                if group is None:
                    return True, ""
                members = getattr(group, "members", None) or []
                return name not in members, f"{name} still sees itself a member of {group_name!r}"

            _wait(left, deadline, timeout, f"{name} to leave device group {group_name}")
            _say(progress, f"{name} has left device group {group_name}")


# --- helpers ---------------------------------------------------------------------------


def _group_or_none(client: Client, group_name: str) -> DeviceGroup | None:
    """The device group as `client`'s device holds it, or None when it has no such group."""
    try:
        return DeviceGroup(name=group_name).get(connection=client)
    except TandemError as exc:
        if exc.status_code == 404:
            return None
        raise


def _invalid(message: str, target: str | None = None) -> TandemError:
    return TandemError(None, "invalid_argument", message, target)


def _say(progress: Progress, line: str) -> None:
    if progress is not None:
        progress(line)


def _names_list(names: Iterable[str]) -> str:
    items = sorted(names) if isinstance(names, set | frozenset) else list(names)
    return "[" + ", ".join(items) + "]"


def _check_arguments(devices: Any, group_name: Any, group_type: Any, partition: Any) -> None:
    """Refuse what cannot form a cluster, before any request: TandemError `invalid_argument`."""
    if group_type not in GROUP_TYPES:
        raise _invalid(
            f"device_group_type must be one of {', '.join(GROUP_TYPES)}, not {group_type!r}",
            "device_group_type",
        )
    try:
        DeviceGroupModel.model_validate({"name": group_name, "type": group_type, "partitions": [partition]})
    except ValidationError as exc:
        first = exc.errors()[0]
        argument = "device_group_name" if first["loc"][:1] == ("name",) else "device_group_partition"
        value = group_name if argument == "device_group_name" else partition
        raise _invalid(f"{argument} {value!r} is not a valid name: {first['msg']}", argument) from None
    if isinstance(devices, str | bytes) or not isinstance(devices, Sequence):
        raise _invalid(f"devices must be a list of tandem.Client objects, not {type(devices).__name__}", "devices")
    if not devices:
        raise _invalid("a cluster needs at least one device", "devices")
    seen: dict[str, int] = {}
    for index, client in enumerate(devices):
        if not isinstance(client, Client):
            raise _invalid(f"devices must be tandem.Client objects; device {index} is a {type(client).__name__}",
                           "devices")
        key = client.url.lower()
        if key in seen:
            raise _invalid(f"{client.url} is given twice (devices {seen[key]} and {index})", client.url)
        seen[key] = index
    limit = GROUP_LIMITS[group_type]
    if len(devices) > limit:
        raise _invalid(f"a {group_type} device group holds at most {limit} devices, {len(devices)} given", "devices")


def _check_new_group(
    root: Client, root_name: str, group_name: str, group_type: str, partition: str, names: list[str]
) -> None:
    """Refuse, before any change, a group the root would refuse: its name taken, its partition missing or
    synced by another group, a device already in another sync-failover group (TandemError 409 or 422)."""
    groups = list(DeviceGroup.get_collection(connection=root))
    if group_name in {group.name for group in groups}:
        raise TandemError(409, "conflict", f"device group {group_name!r} already exists on {root_name}", group_name)
    for group in groups:
        if partition in (getattr(group, "partitions", None) or []):
            raise TandemError(409, "conflict", f"partition {partition} is already synced by device group "
                              f"{group.name}", "device_group_partition")
        both = sorted(set(getattr(group, "members", None) or []) & set(names))
        if group_type == SYNC_FAILOVER and getattr(group, "type", None) == SYNC_FAILOVER and both:
            raise TandemError(409, "conflict", f"{both[0]} is already in sync-failover group {group.name}",
                              both[0])
    try:
        Partition(name=partition).get(connection=root)
    except TandemError as exc:
        if exc.status_code != 404:
            raise
        raise TandemError(422, "validation_error", f"partition {partition!r} does not exist on {root_name}",
                          "device_group_partition") from None


def _describe_status(name: str, status: dict[str, Any], expected: set[str]) -> tuple[bool, str]:
    """Whether `status` (as device `name` sees it) is In Sync with the expected members; else why not."""
    members = {str(m.get("name")): m for m in status.get("members", ()) if isinstance(m, dict)}
    if set(members) != expected:
        return False, (f"{name} sees members {_names_list(set(members))}, expecting {_names_list(expected)}")
    group_status = status.get("status")
    if group_status == IN_SYNC and all(m.get("status") == IN_SYNC for m in members.values()):
        return True, ""
    others = ", ".join(
        f"{member}: {info.get('status')}" + (f" ({info['message']})" if info.get("message") else "")
        for member, info in sorted(members.items())
        if info.get("status") != IN_SYNC
    )
    return False, f"{name} sees {group_status}" + (f" ({others})" if others else "")


def _wait(check: Callable[[], tuple[bool, str]], deadline: float, timeout: float, what: str) -> None:
    """Call `check` every POLL_INTERVAL until it says done; TandemError `timeout` with its last word."""
    while True:
        done, last = check()
        if done:
            return
        if time.monotonic() >= deadline:
            raise TandemError(None, "timeout", f"waited {timeout:g} s for {what}; last seen: {last}")
        time.sleep(POLL_INTERVAL)


@contextlib.contextmanager
def _gone_already_ok() -> Iterator[None]:
    """A delete answered 404 is done (what it removes is gone already); any other error goes on."""
    try:
        yield
    except TandemError as exc:
        if exc.status_code != 404:
            raise
