"""`tandem cluster`: device groups and their devices (create, status, grow, shrink, sync, teardown), and
the membership view of the cluster (show, members, evacuate, restore).

The commands drive the SDK's `ClusterManager` and `DeviceGroup`. The device the command talks to
(the lab's first device, or --url / the global --device) is the cluster's root: it adds devices
to its trust domain and creates or changes the group.

Devices named on the command line (`--device` of `cluster create`, DEVICE of `add-device` and
`remove-device`) are a lab device's name or a URL:

- a lab device: its URL, its certificate fingerprint and its admin password file;
- a URL: the global --username, --password-file (or TANDEM_PASSWORD) and --fingerprint /
  --insecure; a URL that is a lab device's uses that device's fingerprint and password file
  when those options are not given.

The other members of an existing group are reached the same way: a member named like a lab
device is that lab device; another is reached at the management URL its trust record gives,
pinned to the fingerprint recorded there, with the global username and password.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tandem.cli import contexts
from tandem.cli.choices import GroupTypeChoice
from tandem.cli.connection import Settings, connect, is_context, resolve_target
from tandem.cli.errors import CliError
from tandem.cli.output import Column, Output
from tandem.lab.state import LabState, default_lab_dir, load_lab
from tandem.models import DEFAULT_PARTITION
from tandem.models.cluster import GROUP_LIMITS, SYNC_FAILOVER, SYNC_ONLY

if TYPE_CHECKING:
    from tandem.sdk import Client, ClusterManager, ClusterMember
    from tandem.sdk.cluster_members import ClusterMembers

DEFAULT_TIMEOUT = 60.0

app = typer.Typer(
    help="Clusters: a device group of trusted devices that share configuration. The device the command "
         "talks to is the root: it adds the others to its trust domain and creates or changes the group.",
    no_args_is_help=True,
)


GROUP_COLUMNS = [Column("name"), Column("type"), Column("members"), Column("partitions"),
                 Column("auto_sync", "auto sync"), Column("description")]
MEMBER_COLUMNS = [
    Column("name"),
    Column("status"),
    Column("connected"),
    Column("pending_changes", "pending"),
    Column("last_commit", "last commits"),
    Column("message"),
]
CLUSTER_MEMBER_COLUMNS = [Column("server_name", "name"), Column("url"), Column("database"), Column("status"),
                          Column("message"), Column("roles")]
CONFLICT_COLUMNS = [
    Column("type"),
    Column("kind"),
    Column("partition"),
    Column("name"),
    Column("member"),
    Column("devices"),
    Column("message"),
    Column("detected_at", "detected"),
]

NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="The device group's name.", show_default=False)]
DeviceArgument = Annotated[str, typer.Argument(
    metavar="DEVICE", show_default=False, help="A lab device's name (dev-2) or a device's URL.",
)]
MemberArgument = Annotated[str, typer.Argument(
    metavar="NAME", show_default=False, help="The member's name (see `tandem cluster members`).",
)]
TimeoutOption = Annotated[float, typer.Option(
    "--timeout", min=0.1, help="Seconds to wait for every device to see the result.",
)]


# -- helpers ------------------------------------------------------------------------------------

def _settings(ctx: typer.Context) -> Settings:
    return ctx.obj if isinstance(ctx.obj, Settings) else Settings()


def _output(ctx: typer.Context) -> Output:
    return _settings(ctx).output


def _lab(settings: Settings) -> LabState | None:
    try:
        return load_lab(settings.lab_dir or default_lab_dir())
    except ValueError as exc:
        raise CliError(str(exc)) from None


class Devices:
    """The SDK clients a command opens besides its main connection; closed when the command ends."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.clients: list[Client] = []
        self._lab: LabState | None = None
        self._lab_loaded = False

    @property
    def lab(self) -> LabState | None:
        if not self._lab_loaded:
            self._lab = _lab(self.settings)
            self._lab_loaded = True
        return self._lab

    def close(self) -> None:
        for client in self.clients:
            with contextlib.suppress(Exception):  # closing must never hide the command's outcome
                client.close()
        self.clients.clear()

    def _client(self, settings: Settings, env: Mapping[str, str] | None = None) -> Client:
        from tandem.sdk import Client

        target = resolve_target(settings, env=env)
        client = Client(target.url, target.username, target.password, verify=target.verify,
                        fingerprint=target.fingerprint, timeout=self.settings.timeout)
        self.clients.append(client)
        return client

    def lab_device(self, name: str) -> Client:
        """A lab device: its URL, fingerprint and admin password file (whatever the global options say)."""
        lab = self.lab
        if lab is None:
            where = self.settings.lab_dir or default_lab_dir()
            raise CliError(f"{name!r} is neither a URL, a context nor a lab device: no lab is up in {where}",
                           target=name)
        try:
            lab.device(name)
        except LookupError as exc:
            raise CliError(f"{name!r} is not a URL nor a context, and {exc}", target=name) from None
        only_lab = dataclasses.replace(self.settings, url=None, device=name, username=None, password_file=None,
                                       fingerprint=None, insecure=False, _client=None)
        return self._client(only_lab, env={})

    def at_url(self, url: str, fingerprint: str | None = None) -> Client:
        """A device at `url`, with the global credentials (pinned to `fingerprint` when given)."""
        settings = dataclasses.replace(self.settings, url=url, device=None, _client=None)
        if fingerprint and not self.settings.insecure:
            settings = dataclasses.replace(settings, fingerprint=fingerprint)
        return self._client(settings)

    def named(self, value: str) -> Client:
        """A device given on the command line: a URL, a lab device's name, or a context's (its URL, pin or CA
        bundle, user and password file: how to reach each device of a new cluster outside the lab)."""
        if "://" in value:
            return self.at_url(value)
        if is_context(self.settings, value):
            own_password = contexts.load().named(value).password_file is not None
            env = {k: v for k, v in os.environ.items() if not (own_password and k == "TANDEM_PASSWORD")}
            return self._client(dataclasses.replace(self.settings, url=None, device=None, context=value,
                                                    fingerprint=None, ca_file=None, username=None,
                                                    password_file=None, _client=None), env=env)
        return self.lab_device(value)

    def member(self, name: str, trust_record: Mapping[str, Any] | None) -> Client:
        """A member of an existing group: the lab device of that name, else where its trust record says."""
        lab = self.lab
        if lab is not None and any(d.name == name for d in lab.devices):
            return self.lab_device(name)
        url = (trust_record or {}).get("management_url")
        if not url:
            raise CliError(f"cannot reach member {name}: it is not a lab device and the trust domain gives no "
                           "management URL for it", target=name)
        record = trust_record or {}
        return self.at_url(str(url), record.get("management_fingerprint") or record.get("fingerprint"))


def _devices(ctx: typer.Context) -> Devices:
    devices = Devices(_settings(ctx))
    ctx.call_on_close(devices.close)
    return devices


@contextlib.contextmanager
def _progress(output: Output, description: str) -> Iterator[Callable[[str], None]]:
    """Each step of long work: a line on stderr, and a spinner with the time spent naming the current one."""
    with output.working(description) as current:
        def step(message: str) -> None:
            output.note(message)
            current(message)
        yield step


def _group_names(client: Client) -> list[str]:
    from tandem.sdk import DeviceGroup

    return [group.name for group in DeviceGroup.get_collection(connection=client)]


def _default_group(client: Client, name: str | None) -> str:
    if name:
        return name
    names = _group_names(client)
    if len(names) == 1:
        return names[0]
    if not names:
        raise CliError(f"{client.url} has no device group (create one with `tandem cluster create`)", target="NAME")
    raise CliError(f"{client.url} has several device groups ({', '.join(sorted(names))}): name one",
                   target="NAME")


def _manager(ctx: typer.Context, name: str, devices: Devices) -> tuple[ClusterManager, dict[str, Client]]:
    """A ClusterManager of the existing group `name`, rooted at the command's device; and the clients by name."""
    from tandem.sdk import ClusterManager, DeviceGroup, TrustedDevice

    root = connect(_settings(ctx))
    root_name = str(root.device()["name"])
    group = DeviceGroup(name=name).get(connection=root)
    members = [str(m) for m in (getattr(group, "members", None) or [])]
    if root_name not in members:
        raise CliError(f"{root_name} ({root.url}) is not a member of device group {name} (members: "
                       f"{', '.join(members) or 'none'}): talk to a member with --device or --url", target=name)
    trust = {str(d.name): d.to_dict() for d in TrustedDevice.get_collection(connection=root)}
    clients = {root_name: root}
    for member in members:
        if member != root_name:
            clients[member] = devices.member(member, trust.get(member))
    partitions = list(getattr(group, "partitions", None) or [DEFAULT_PARTITION])
    manager = ClusterManager(devices=list(clients.values()), device_group_name=name,
                             device_group_type=getattr(group, "type", SYNC_FAILOVER),
                             device_group_partition=partitions[0])
    return manager, clients


def show_status(output: Output, status: Mapping[str, Any], *, seen_from: str | None = None,
                group: bool = True) -> None:
    """A group's sync status: the group (unless not `group`), then its members, then its conflicts
    (JSON: the status as is)."""
    if output.json:
        output.print_json(dict(status))
        return
    if group:
        head = {"name": status.get("name"), "type": status.get("type"), "status": status.get("status")}
        if seen_from:
            head["seen from"] = seen_from
        output.record(head)
        output.out.print()
    output.records(list(status.get("members") or []), MEMBER_COLUMNS, title="members", empty="no members")
    conflicts = list(status.get("conflicts") or [])
    if conflicts:
        output.out.print()
        output.records(conflicts, CONFLICT_COLUMNS, title="conflicts")
    else:
        output.note("no conflicts")


def _status(client: Client, name: str) -> dict[str, Any]:
    from tandem.sdk import DeviceGroup

    return DeviceGroup(name=name).status(connection=client)


# -- commands -----------------------------------------------------------------------------------

@app.command("list")
def cluster_list(ctx: typer.Context) -> None:
    """List the device groups of the device's trust domain."""
    from tandem.sdk import DeviceGroup

    client = connect(_settings(ctx))
    records = [group.to_dict() for group in DeviceGroup.get_collection(connection=client)]
    _output(ctx).records(records, GROUP_COLUMNS, empty="no device groups")


@app.command("create")
def cluster_create(
    ctx: typer.Context,
    name: NameArgument,
    group_type: Annotated[GroupTypeChoice, typer.Option(
        "--type", "-t", case_sensitive=False,
        help=f"sync-failover: config sync and failover (at most {GROUP_LIMITS[SYNC_FAILOVER]} devices); "
             f"sync-only: config sync (at most {GROUP_LIMITS[SYNC_ONLY]}).",
    )] = GroupTypeChoice.sync_failover,
    partition: Annotated[str, typer.Option("--partition", "-p", help="The partition the group syncs.")]
    = DEFAULT_PARTITION,
    device: Annotated[list[str] | None, typer.Option(
        "--device", metavar="URL_OR_LABNAME", show_default=False,
        help="A device of the cluster: a lab device's name or a URL; the first is the root. Repeatable. "
             "\\[default: every device of the lab]",
    )] = None,
    timeout: TimeoutOption = DEFAULT_TIMEOUT,
) -> None:
    """Form a cluster: the first device trusts the others, creates the group and waits until it is In Sync."""
    from tandem.sdk import ClusterManager

    output = _output(ctx)
    devices = _devices(ctx)
    if device:
        clients = [devices.named(value) for value in device]
    else:
        lab = devices.lab
        if lab is None or not lab.devices:
            raise CliError("no devices: give --device URL_OR_LABNAME (repeatable), or start a lab with "
                           "`tandem lab up`", target="--device")
        clients = [devices.lab_device(d.name) for d in lab.devices]
    manager = ClusterManager()
    with _progress(output, f"creating cluster {name}") as progress:
        cluster = manager.create(devices=clients, device_group_name=name, device_group_type=group_type.value,
                                 device_group_partition=partition, timeout=timeout, progress=progress)
    status = _status(cluster.devices[0], name)
    if not output.json:
        output.done(f"created cluster {name} ({group_type.value}, partition {partition}) of "
                    f"{len(clients)} device(s)")
    show_status(output, status)


@app.command("status")
def cluster_status(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(
        metavar="[NAME]", show_default=False, help="The device group. \\[default: the only one]",
    )] = None,
) -> None:
    """Show a group's sync status as the device sees it: the group, its members, its conflicts."""
    client = connect(_settings(ctx))
    group = _default_group(client, name)
    show_status(_output(ctx), _status(client, group), seen_from=str(client.device()["name"]))


@app.command("add-device")
def cluster_add_device(ctx: typer.Context, name: NameArgument, device: DeviceArgument,
                       timeout: TimeoutOption = DEFAULT_TIMEOUT) -> None:
    """Add a device to a cluster: trusted, made a member, then waited for until In Sync everywhere."""
    output = _output(ctx)
    devices = _devices(ctx)
    manager, _clients = _manager(ctx, name, devices)
    new = devices.named(device)
    with _progress(output, f"adding {device} to cluster {name}") as progress:
        cluster = manager.add_devices(new, timeout=timeout, progress=progress)
    if not output.json:
        output.done(f"added {device} to cluster {name}")
    show_status(output, _status(cluster.devices[0], name))


@app.command("remove-device")
def cluster_remove_device(ctx: typer.Context, name: NameArgument, device: Annotated[str, typer.Argument(
    metavar="DEVICE", show_default=False, help="The member's name, a lab device's name or a device's URL.",
)], timeout: TimeoutOption = DEFAULT_TIMEOUT) -> None:
    """Remove a device from a cluster: out of the group, then out of the trust domain (alone, it keeps its config).

    The device the command talks to (the root) cannot be removed.
    """
    output = _output(ctx)
    devices = _devices(ctx)
    manager, clients = _manager(ctx, name, devices)
    leaving = clients[device] if device in clients else devices.named(device)
    with _progress(output, f"removing {device} from cluster {name}") as progress:
        cluster = manager.remove_devices(leaving, timeout=timeout, progress=progress)
    if not output.json:
        output.done(f"removed {device} from cluster {name}")
    show_status(output, _status(cluster.devices[0], name))


@app.command("sync")
def cluster_sync(
    ctx: typer.Context,
    name: NameArgument,
    from_device: Annotated[str, typer.Option(
        "--from", metavar="DEVICE", show_default=False, help="The member whose configuration becomes the group's.",
    )],
    timeout: TimeoutOption = DEFAULT_TIMEOUT,
) -> None:
    """Make one member's configuration the group's (a job, waited for)."""
    from tandem.sdk import DeviceGroup

    output = _output(ctx)
    client = connect(_settings(ctx))
    with output.working(f"syncing device group {name} from {from_device}"):
        job = DeviceGroup(name=name).sync(from_device, poll_timeout=timeout, connection=client)
    if output.json:
        output.print_json(job.to_dict())
        return
    output.done(f"synced device group {name} from {from_device}")
    output.record(job.to_dict())


@app.command("clear-conflicts")
def cluster_clear_conflicts(ctx: typer.Context, name: NameArgument) -> None:
    """Clear the conflict records a group's status shows."""
    from tandem.sdk import DeviceGroup

    DeviceGroup(name=name).clear_conflicts(connection=connect(_settings(ctx)))
    _output(ctx).done(f"cleared the write conflicts of device group {name} on every member (rule breaks stay "
                      "until the configuration is fixed)", {"name": name})


@app.command("teardown")
def cluster_teardown(ctx: typer.Context, name: NameArgument, timeout: TimeoutOption = DEFAULT_TIMEOUT) -> None:
    """Delete the group, then remove every other member from the trust domain; each keeps its configuration."""
    output = _output(ctx)
    devices = _devices(ctx)
    manager, clients = _manager(ctx, name, devices)
    with _progress(output, f"tearing down cluster {name}") as progress:
        manager.teardown(timeout=timeout, progress=progress)
    output.done(f"tore down cluster {name}", {"name": name, "devices": list(clients), "torn_down": True})


@app.command("show")
def cluster_show(ctx: typer.Context) -> None:
    """Show the cluster (the trust domain) as the device sees it: its name and id, the device, whether it is
    clustered, and what a new member supplies (to `POST /api/trust/devices` on any member)."""
    info = connect(_settings(ctx)).cluster.get().to_dict()
    output = _output(ctx)
    if output.json:
        output.print_json(info)
        return
    output.record(dict(info, member_config=[item.get("key") for item in info.get("member_config") or ()]),
                  fields=["cluster_name", "uuid", "server_name", "enabled", "member_config"])


def _cluster_members(ctx: typer.Context) -> ClusterMembers:
    from tandem.sdk.cluster_members import ClusterMembers

    return ClusterMembers(connect(_settings(ctx)))


@app.command("members")
def cluster_members(ctx: typer.Context) -> None:
    """List the cluster's members (every trusted device) and their status, as the device sees them now."""
    records = [member.to_dict() for member in _cluster_members(ctx).all()]
    _output(ctx).records(records, CLUSTER_MEMBER_COLUMNS, empty="no members")


def _member_action(ctx: typer.Context, name: str, action: Callable[[ClusterMember], ClusterMember],
                   done: str) -> None:
    _output(ctx).changed(f"{done} {name}", action(_cluster_members(ctx).get(name)).to_dict())


@app.command("evacuate")
def cluster_evacuate(ctx: typer.Context, name: MemberArgument) -> None:
    """Evacuate a member: the other members take its traffic groups and it takes none until restored."""
    _member_action(ctx, name, lambda member: member.evacuate(), "evacuated")


@app.command("restore")
def cluster_restore(ctx: typer.Context, name: MemberArgument) -> None:
    """Restore an evacuated member: it may take traffic groups again (it stays standby without auto-failback)."""
    _member_action(ctx, name, lambda member: member.restore(), "restored")
