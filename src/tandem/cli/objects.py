"""Configuration object commands: partition, monitor, pool (and members), virtual, user, device, job
(certificate: `cli.certificates`).

Every command reaches the device through the SDK (`tandem.sdk`). Updates read the object,
change the attributes the options name and `patch()` it, so only those fields are sent.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from tandem.cli.choices import (
    LbMethodChoice,
    MemberStateChoice,
    MonitorTypeChoice,
    PersistenceChoice,
    ProtocolChoice,
    RoleChoice,
)
from tandem.cli.connection import Settings, connect, read_password_file
from tandem.cli.errors import CliError
from tandem.cli.output import Column, Output, format_value
from tandem.models import DEFAULT_PARTITION
from tandem.models.fields import member_key
from tandem.models.resources import (
    DEFAULT_LB_METHOD,
    DEFAULT_TRAFFIC_GROUP,
    HTTP_METHOD,
    HTTP_PATH,
    HTTP_STATUS,
    MONITOR_INTERVAL,
    MONITOR_TIMEOUT,
)

# -- shared pieces ------------------------------------------------------------------------------

def _settings(ctx: typer.Context) -> Settings:
    return ctx.obj if isinstance(ctx.obj, Settings) else Settings()


def _output(ctx: typer.Context) -> Output:
    return _settings(ctx).output


def _sdk() -> Any:
    import tandem.sdk

    return tandem.sdk


def parse_filters(items: Iterable[str] | None) -> dict[str, str]:
    """`FIELD=VALUE` strings → {field: value}; CliError on a malformed or repeated filter."""
    filters: dict[str, str] = {}
    for item in items or ():
        field, sep, value = item.partition("=")
        field = field.strip()
        if not sep or not field:
            raise CliError(f"{item!r} is not FIELD=VALUE", target="--filter")
        if field in filters:
            raise CliError(f"two filters on {field!r}", target="--filter")
        filters[field] = value
    return filters


def parse_member(text: str) -> tuple[str, int]:
    """`ADDRESS:PORT` (IPv6 as `[ADDRESS]:PORT`) → (address, port)."""
    host, sep, port_text = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host:
        raise CliError(f"{text!r} is not ADDRESS:PORT", target="ADDRESS:PORT")
    if not port_text.isdigit():
        raise CliError(f"{port_text!r} is not a port number", target="port")
    return host, int(port_text)


def parse_weighted_member(text: str) -> tuple[str, int, int | None]:
    """`ADDRESS:PORT[:WEIGHT]` (IPv6 as `[ADDRESS]:PORT[:WEIGHT]`) → (address, port, weight or None)."""
    after_address = text.rpartition("]")[2] if text.startswith("[") else text
    if after_address.count(":") != 2:  # an IPv6 address without brackets takes no weight
        return (*parse_member(text), None)
    text, _, weight_text = text.rpartition(":")
    if not weight_text.isdigit():
        raise CliError(f"{weight_text!r} is not a weight (0-256)", target="weight")
    return (*parse_member(text), int(weight_text))


def read_rules_file(path: Path) -> list[Any]:
    """The rules in a JSON or YAML file (a list of rule objects); the device validates them."""
    import yaml

    try:
        rules = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise CliError(f"cannot read rules from {str(path)!r}: {exc}", target="--rules-file") from None
    if not isinstance(rules, list):
        raise CliError(f"{str(path)!r} does not hold a list of rules", target="--rules-file")
    return rules


def _changes(**options: Any) -> dict[str, Any]:
    """The options that were given (None means not given)."""
    return {key: value.value if isinstance(value, enum.Enum) else value
            for key, value in options.items() if value is not None}


def _records(objects: Iterable[Any]) -> list[dict[str, Any]]:
    return [obj.to_dict() for obj in objects]


def _list(ctx: typer.Context, cls_name: str, columns: list[Column], *parents: Any,
          filters: list[str] | None = None, extra: Mapping[str, Any] | None = None, title: str | None = None,
          empty: str = "nothing found") -> None:
    query = parse_filters(filters)
    for key, value in (extra or {}).items():
        if value is None:
            continue
        if key in query and query[key] != value:
            raise CliError(f"--{key} {value} contradicts --filter {key}={query[key]}", target="--filter")
        query[key] = value
    cls = getattr(_sdk(), cls_name)
    records = _records(cls.get_collection(*parents, connection=connect(_settings(ctx)), **query))
    _output(ctx).records(records, columns, title=title, empty=empty)


def _get(ctx: typer.Context, cls_name: str, *parents: Any, **identity: Any) -> Any:
    cls = getattr(_sdk(), cls_name)
    return cls(*parents, connection=connect(_settings(ctx)), **identity).get()


def _create(ctx: typer.Context, cls_name: str, *parents: Any, **fields: Any) -> Any:
    cls = getattr(_sdk(), cls_name)
    return cls(*parents, connection=connect(_settings(ctx)), **fields).post()


def _update(ctx: typer.Context, cls_name: str, identity: dict[str, Any], changes: dict[str, Any],
            *parents: Any) -> Any:
    if not changes:
        raise CliError("nothing to update: give at least one option to change (see --help)")
    obj = _get(ctx, cls_name, *parents, **identity)
    for key, value in changes.items():
        setattr(obj, key, value)
    return obj.patch()


def _delete(ctx: typer.Context, cls_name: str, *parents: Any, **identity: Any) -> None:
    cls = getattr(_sdk(), cls_name)
    cls(*parents, connection=connect(_settings(ctx)), **identity).delete()


def _path(partition: str | None, name: str) -> str:
    return f"/{partition}/{name}" if partition else name


def _show(ctx: typer.Context, record: dict[str, Any], *, title: str | None = None,
          skip: Iterable[str] = ()) -> None:
    _output(ctx).record(record, title=title, skip=skip)


def _done(ctx: typer.Context, verb: str, kind: str, label: str, record: dict[str, Any] | None = None,
          *, skip: Iterable[str] = ()) -> None:
    """After a change: a line (and the stored object) for people, the object (or the key) as JSON."""
    output = _output(ctx)
    if output.json:
        output.print_json(record if record is not None else {"deleted": kind, "name": label})
        return
    output.done(f"{verb} {kind} {label}")
    if record is not None:
        output.record(record, skip=skip)


# -- options used by several commands ------------------------------------------------------------

FilterOption = Annotated[list[str] | None, typer.Option(
    "--filter", "-f", metavar="FIELD=VALUE", show_default=False,
    help="Only records whose FIELD is VALUE (exact, or a glob with * and ?). Repeatable.",
)]
ListPartitionOption = Annotated[str | None, typer.Option(
    "--partition", "-p", show_default=False, help="Only this partition. \\[default: all]",
)]
PartitionOption = Annotated[str, typer.Option("--partition", "-p", help="The object's partition.")]
NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="The object's name.", show_default=False)]
DescriptionOption = Annotated[str | None, typer.Option("--description", show_default=False, help="Free text.")]


Shower = Callable[[typer.Context, dict[str, Any]], None]


def _add_read_commands(app: typer.Typer, cls_name: str, noun: str, columns: list[Column], *, partitioned: bool,
                       helps: tuple[str, str], show: Shower | None = None) -> None:
    """`list` and `show` of one resource (`helps`: their help texts; `show` shows a record)."""
    shown = show or (lambda ctx, record: _show(ctx, record))
    empty = f"no {noun}s"
    if partitioned:
        def list_objects(ctx: typer.Context, partition: ListPartitionOption = None,
                         filters: FilterOption = None) -> None:
            _list(ctx, cls_name, columns, filters=filters, extra={"partition": partition}, empty=empty)

        def show_object(ctx: typer.Context, name: NameArgument, partition: PartitionOption = DEFAULT_PARTITION) -> None:
            shown(ctx, _get(ctx, cls_name, partition=partition, name=name).to_dict())
    else:
        def list_objects(ctx: typer.Context, filters: FilterOption = None) -> None:  # type: ignore[misc]
            _list(ctx, cls_name, columns, filters=filters, empty=empty)

        def show_object(ctx: typer.Context, name: NameArgument) -> None:  # type: ignore[misc]
            shown(ctx, _get(ctx, cls_name, name=name).to_dict())
    app.command("list", help=helps[0])(list_objects)
    app.command("show", help=helps[1])(show_object)


def _add_delete_command(app: typer.Typer, cls_name: str, noun: str, *, partitioned: bool, help: str) -> None:
    """`delete` of one resource."""
    if partitioned:
        def delete_object(ctx: typer.Context, name: NameArgument,
                          partition: PartitionOption = DEFAULT_PARTITION) -> None:
            _delete(ctx, cls_name, partition=partition, name=name)
            _done(ctx, "deleted", noun, _path(partition, name))
    else:
        def delete_object(ctx: typer.Context, name: NameArgument) -> None:  # type: ignore[misc]
            _delete(ctx, cls_name, name=name)
            _done(ctx, "deleted", noun, name)
    app.command("delete", help=help)(delete_object)


# -- partitions ---------------------------------------------------------------------------------

partition_app = typer.Typer(help="Partitions: namespaces of configuration objects (the unit of sync and RBAC).",
                            no_args_is_help=True)
PARTITION_COLUMNS = [Column("name"), Column("description")]
_add_read_commands(partition_app, "Partition", "partition", PARTITION_COLUMNS, partitioned=False,
                   helps=("List partitions.", "Show one partition."))


@partition_app.command("create")
def partition_create(ctx: typer.Context, name: NameArgument, description: DescriptionOption = None) -> None:
    """Create a partition."""
    obj = _create(ctx, "Partition", **_changes(name=name, description=description))
    _done(ctx, "created", "partition", name, obj.to_dict())


@partition_app.command("update")
def partition_update(ctx: typer.Context, name: NameArgument, description: DescriptionOption = None) -> None:
    """Change a partition's description."""
    obj = _update(ctx, "Partition", {"name": name}, _changes(description=description))
    _done(ctx, "updated", "partition", name, obj.to_dict())


_add_delete_command(partition_app, "Partition", "partition", partitioned=False,
                    help="Delete a partition (it must be empty).")


# -- monitors -----------------------------------------------------------------------------------

monitor_app = typer.Typer(help="Health monitors: tcp (connect) or http (a request to a path, expect a status), "
                               "in the clear or over TLS.", no_args_is_help=True)
MONITOR_COLUMNS = [Column("partition"), Column("name"), Column("type"), Column("interval"), Column("timeout"),
                   Column("rise"), Column("fall"), Column("method"), Column("path"),
                   Column("expected_status", "expected status"), Column("host"), Column("tls"),
                   Column("description")]
_add_read_commands(monitor_app, "Monitor", "monitor", MONITOR_COLUMNS, partitioned=True,
                   helps=("List monitors.", "Show one monitor."))

PathOption = Annotated[str | None, typer.Option("--path", show_default=False,
                                                help=f"http: the path to GET. \\[default: {HTTP_PATH}]")]
ExpectedStatusOption = Annotated[int | None, typer.Option(
    "--expected-status", min=100, max=599, show_default=False,
    help=f"http: the status to expect. \\[default: {HTTP_STATUS}]")]
IntervalOption = Annotated[float | None, typer.Option(
    "--interval", show_default=False, help=f"Seconds between checks. \\[default: {MONITOR_INTERVAL:g}]")]
TimeoutOption = Annotated[float | None, typer.Option(
    "--timeout", show_default=False,
    help=f"Seconds without a good check before a member is down. \\[default: {MONITOR_TIMEOUT:g}]")]
RiseOption = Annotated[int | None, typer.Option(
    "--rise", min=1, max=10, show_default=False,
    help="Good checks in a row before a down member is up. \\[default: 1]")]
FallOption = Annotated[int | None, typer.Option(
    "--fall", min=1, max=10, show_default=False,
    help="Failed checks in a row before a member is down. \\[default: 1]")]
MethodOption = Annotated[str | None, typer.Option(
    "--method", show_default=False, help=f"http: the request method. \\[default: {HTTP_METHOD}]")]
HostOption = Annotated[str | None, typer.Option(
    "--host", show_default=False, help="http: the Host header to send. \\[default: the member's ADDRESS:PORT]")]
TlsOption = Annotated[bool | None, typer.Option(
    "--tls/--no-tls", show_default=False,
    help="Check over TLS (the member's certificate is not verified). \\[default: --no-tls]")]


@monitor_app.command("create")
def monitor_create(
    ctx: typer.Context,
    name: NameArgument,
    type_: Annotated[MonitorTypeChoice, typer.Option("--type", help="What to check.")],
    partition: PartitionOption = DEFAULT_PARTITION,
    path: PathOption = None,
    expected_status: ExpectedStatusOption = None,
    interval: IntervalOption = None,
    timeout: TimeoutOption = None,
    rise: RiseOption = None,
    fall: FallOption = None,
    method: MethodOption = None,
    host: HostOption = None,
    tls: TlsOption = None,
    description: DescriptionOption = None,
) -> None:
    """Create a monitor."""
    obj = _create(ctx, "Monitor", **_changes(partition=partition, name=name, type=type_, path=path,
                                             expected_status=expected_status, interval=interval,
                                             timeout=timeout, rise=rise, fall=fall, method=method, host=host,
                                             tls=tls, description=description))
    _done(ctx, "created", "monitor", _path(partition, name), obj.to_dict())


@monitor_app.command("update")
def monitor_update(
    ctx: typer.Context,
    name: NameArgument,
    partition: PartitionOption = DEFAULT_PARTITION,
    type_: Annotated[MonitorTypeChoice | None,
                     typer.Option("--type", show_default=False, help="What to check.")] = None,
    path: PathOption = None,
    expected_status: ExpectedStatusOption = None,
    interval: IntervalOption = None,
    timeout: TimeoutOption = None,
    rise: RiseOption = None,
    fall: FallOption = None,
    method: MethodOption = None,
    host: HostOption = None,
    no_host: Annotated[bool, typer.Option("--no-host", help="http: send the member's ADDRESS:PORT as Host.")] = False,
    tls: TlsOption = None,
    description: DescriptionOption = None,
) -> None:
    """Change a monitor: only the options given are sent."""
    if host is not None and no_host:
        raise CliError("--host and --no-host contradict each other", target="--host")
    changes = _changes(type=type_, path=path, expected_status=expected_status, interval=interval,
                       timeout=timeout, rise=rise, fall=fall, method=method, host=host, tls=tls,
                       description=description)
    if no_host:
        changes["host"] = None
    if type_ == "tcp":
        # a tcp monitor has no http fields: clear them (sent only if they were set)
        for field in ("path", "expected_status", "method", "host"):
            changes.setdefault(field, None)
    obj = _update(ctx, "Monitor", {"partition": partition, "name": name}, changes)
    _done(ctx, "updated", "monitor", _path(partition, name), obj.to_dict())


_add_delete_command(monitor_app, "Monitor", "monitor", partitioned=True, help="Delete a monitor (no pool may use it).")


# -- pools --------------------------------------------------------------------------------------

pool_app = typer.Typer(help="Pools: members (address:port) behind a load-balancing method and a monitor.",
                       no_args_is_help=True)
member_app = typer.Typer(help="The members of a pool, one at a time.", no_args_is_help=True)
pool_app.add_typer(member_app, name="member")


def _members_summary(members: Any, _record: Mapping[str, Any]) -> str:
    if not isinstance(members, list):
        return format_value(members)
    states = [m.get("state") for m in members if isinstance(m, dict)]
    shown = [f"{states.count(state)} {state}" for state in ("disabled", "drain") if state in states]
    return f"{len(members)}" + (f" ({', '.join(shown)})" if shown else "")


def _tls_summary(tls: Any, _record: Mapping[str, Any]) -> str:
    if not isinstance(tls, dict):
        return format_value(tls)
    return f"verified with {tls.get('ca')}" if tls.get("verify") else "not verified"


POOL_COLUMNS = [Column("partition"), Column("name"), Column("lb_method", "lb method"), Column("persistence"),
                Column("monitor"), Column("tls", render=_tls_summary), Column("members", render=_members_summary),
                Column("description")]
MEMBER_COLUMNS = [Column("address"), Column("port"), Column("weight"), Column("state"), Column("description")]

LbMethodOption = Annotated[LbMethodChoice | None, typer.Option(
    "--lb-method", show_default=False, help=f"How to pick a member. \\[default: {DEFAULT_LB_METHOD}]")]
PersistenceOption = Annotated[PersistenceChoice | None, typer.Option(
    "--persistence", show_default=False,
    help="Keep a client on one member: by source address, or by cookie (http). \\[default: none]")]
WeightOption = Annotated[int | None, typer.Option(
    "--weight", min=0, max=256, show_default=False,
    help="Its share of new connections relative to the others' (0: none). \\[default: 1]")]
MonitorOption = Annotated[str | None, typer.Option(
    "--monitor", show_default=False, help="A monitor: NAME (same partition) or /PARTITION/NAME.")]
PoolTlsOption = Annotated[bool | None, typer.Option(
    "--tls/--no-tls", show_default=False,
    help="Reach the members over TLS (verified against --tls-ca unless --tls-no-verify). \\[default: --no-tls]")]
TlsCaOption = Annotated[str | None, typer.Option(
    "--tls-ca", show_default=False,
    help="The CA bundle to verify members against: a certificate without key, NAME or /PARTITION/NAME.")]
TlsNoVerifyOption = Annotated[bool, typer.Option("--tls-no-verify", help="With --tls: do not verify the members.")]
TlsServerNameOption = Annotated[str | None, typer.Option(
    "--tls-server-name", show_default=False,
    help="With --tls: the name to ask members for (SNI); verified, their certificate must hold it.")]
MemberStateOption = Annotated[MemberStateChoice | None, typer.Option(
    "--state", show_default=False,
    help="enabled; drain: no new connections, open ones finish; disabled: no traffic. \\[default: enabled]")]


def _pool_tls(tls: bool | None, ca: str | None, no_verify: bool, server_name: str | None) -> dict[str, Any]:
    """The `tls` change the options ask for (none given: none)."""
    if not tls:
        if ca is not None or no_verify or server_name is not None:
            raise CliError("--tls-ca, --tls-no-verify and --tls-server-name go with --tls", target="--tls")
        return {} if tls is None else {"tls": None}
    return {"tls": _changes(verify=not no_verify, ca=ca, server_name=server_name)}
PoolArgument = Annotated[str, typer.Argument(metavar="POOL", help="The pool's name.", show_default=False)]
MemberArgument = Annotated[str, typer.Argument(
    metavar="ADDRESS:PORT", help="The member, e.g. 10.0.0.1:80 or [2001:db8::1]:80.", show_default=False)]


def _show_pool(ctx: typer.Context, record: dict[str, Any], verb: str | None = None) -> None:
    output = _output(ctx)
    label = _path(record.get("partition"), str(record.get("name")))
    if output.json:
        output.print_json(record)
        return
    if verb:
        output.done(f"{verb} pool {label}")
    output.record(record, skip=("members",))
    members = record.get("members") or []
    output.records(members, MEMBER_COLUMNS, title="members", empty="no members")


_add_read_commands(pool_app, "Pool", "pool", POOL_COLUMNS, partitioned=True, show=_show_pool,
                   helps=("List pools (with their number of members).", "Show one pool and its members."))


@pool_app.command("create")
def pool_create(
    ctx: typer.Context,
    name: NameArgument,
    partition: PartitionOption = DEFAULT_PARTITION,
    lb_method: LbMethodOption = None,
    persistence: PersistenceOption = None,
    monitor: MonitorOption = None,
    tls: PoolTlsOption = None,
    tls_ca: TlsCaOption = None,
    tls_no_verify: TlsNoVerifyOption = False,
    tls_server_name: TlsServerNameOption = None,
    members: Annotated[list[str] | None, typer.Option(
        "--member", "-m", metavar="ADDRESS:PORT[:WEIGHT]", show_default=False,
        help="A member to start with (IPv6: [ADDRESS]:PORT[:WEIGHT]). Repeatable.",
    )] = None,
    description: DescriptionOption = None,
) -> None:
    """Create a pool."""
    fields = _changes(partition=partition, name=name, lb_method=lb_method, persistence=persistence, monitor=monitor,
                      description=description) | _pool_tls(tls, tls_ca, tls_no_verify, tls_server_name)
    if members:
        fields["members"] = [_changes(address=address, port=port, weight=weight)
                             for address, port, weight in map(parse_weighted_member, members)]
    _show_pool(ctx, _create(ctx, "Pool", **fields).to_dict(), "created")


@pool_app.command("update")
def pool_update(
    ctx: typer.Context,
    name: NameArgument,
    partition: PartitionOption = DEFAULT_PARTITION,
    lb_method: LbMethodOption = None,
    persistence: PersistenceOption = None,
    monitor: MonitorOption = None,
    no_monitor: Annotated[bool, typer.Option("--no-monitor", help="Remove the pool's monitor.")] = False,
    tls: PoolTlsOption = None,
    tls_ca: TlsCaOption = None,
    tls_no_verify: TlsNoVerifyOption = False,
    tls_server_name: TlsServerNameOption = None,
    description: DescriptionOption = None,
) -> None:
    """Change a pool: only the options given are sent. Members: `tandem pool member ...`."""
    if monitor is not None and no_monitor:
        raise CliError("--monitor and --no-monitor contradict each other", target="--monitor")
    changes = _changes(lb_method=lb_method, persistence=persistence, monitor=monitor, description=description)
    changes |= _pool_tls(tls, tls_ca, tls_no_verify, tls_server_name)
    if no_monitor:
        changes["monitor"] = None
    obj = _update(ctx, "Pool", {"partition": partition, "name": name}, changes)
    _show_pool(ctx, obj.to_dict(), "updated")



_add_delete_command(pool_app, "Pool", "pool", partitioned=True, help="Delete a pool (no virtual server may use it).")

POOL_STATS_COLUMNS = [Column("member", no_wrap=True), Column("health"), Column("state"),
                      Column("connections_current", "connections"), Column("connections_total", "total"),
                      Column("bytes_in", "bytes in"), Column("bytes_out", "bytes out")]


@pool_app.command("stats")
def pool_stats(ctx: typer.Context, name: NameArgument, partition: PartitionOption = DEFAULT_PARTITION,
               device: StatsDeviceOption = None) -> None:
    """Health and counters of a pool's members, as this device serves the pool now.

    The active device of a traffic group serves the pools of its virtual servers.
    """
    _pick_device(ctx, device)
    sdk = _sdk()
    try:
        stats = sdk.Pool(partition=partition, name=name, connection=connect(_settings(ctx))).stats()
    except sdk.TandemError as exc:
        _not_served_here(ctx, exc, name)
    output = _output(ctx)
    if output.json:
        output.print_json(stats)
        return
    rows = [{"member": key, **value} for key, value in stats.items()]
    output.records(rows, POOL_STATS_COLUMNS, title=f"pool {_path(partition, name)}", empty="no members")


@member_app.command("list")
def member_list(ctx: typer.Context, pool: PoolArgument, partition: PartitionOption = DEFAULT_PARTITION,
                filters: FilterOption = None) -> None:
    """List a pool's members."""
    _list(ctx, "PoolMember", MEMBER_COLUMNS, partition, pool, filters=filters, empty="no members")


@member_app.command("add")
def member_add(
    ctx: typer.Context,
    pool: PoolArgument,
    member: MemberArgument,
    partition: PartitionOption = DEFAULT_PARTITION,
    disabled: Annotated[bool, typer.Option("--disabled", help="Add it disabled (no traffic).")] = False,
    state: MemberStateOption = None,
    weight: WeightOption = None,
    description: DescriptionOption = None,
) -> None:
    """Add a member to a pool."""
    address, port = parse_member(member)
    if disabled and state is not None:
        raise CliError("--disabled and --state contradict each other", target="--disabled")
    fields = _changes(address=address, port=port, state=state, weight=weight, description=description)
    if disabled:
        fields["state"] = "disabled"
    obj = _create(ctx, "PoolMember", partition, pool, **fields)
    record = obj.to_dict()
    _done(ctx, "added", "member", f"{_member_label(record, member)} to pool {_path(partition, pool)}", record)


def _member_label(record: Mapping[str, Any], fallback: str) -> str:
    if isinstance(record.get("address"), str) and isinstance(record.get("port"), int):
        return member_key(record["address"], record["port"])
    return fallback


@member_app.command("remove")
def member_remove(ctx: typer.Context, pool: PoolArgument, member: MemberArgument,
                  partition: PartitionOption = DEFAULT_PARTITION) -> None:
    """Remove a member from a pool."""
    address, port = parse_member(member)
    _delete(ctx, "PoolMember", partition, pool, address=address, port=port)
    output = _output(ctx)
    if output.json:
        output.print_json({"deleted": "member", "pool": _path(partition, pool), "address": address, "port": port})
    else:
        output.done(f"removed member {member} from pool {_path(partition, pool)}")


def _set_member_state(ctx: typer.Context, pool: str, member: str, partition: str, state: str, verb: str) -> None:
    address, port = parse_member(member)
    obj = _update(ctx, "PoolMember", {"address": address, "port": port}, {"state": state}, partition, pool)
    _done(ctx, verb, "member", f"{_member_label(obj.to_dict(), member)} of pool {_path(partition, pool)}",
          obj.to_dict())


@member_app.command("update")
def member_update(ctx: typer.Context, pool: PoolArgument, member: MemberArgument,
                  partition: PartitionOption = DEFAULT_PARTITION, state: MemberStateOption = None,
                  weight: WeightOption = None, description: DescriptionOption = None) -> None:
    """Change a member's state, weight or description: only the options given are sent."""
    address, port = parse_member(member)
    obj = _update(ctx, "PoolMember", {"address": address, "port": port},
                  _changes(state=state, weight=weight, description=description), partition, pool)
    _done(ctx, "updated", "member", f"{_member_label(obj.to_dict(), member)} of pool {_path(partition, pool)}",
          obj.to_dict())


@member_app.command("enable")
def member_enable(ctx: typer.Context, pool: PoolArgument, member: MemberArgument,
                  partition: PartitionOption = DEFAULT_PARTITION) -> None:
    """Enable a member: it gets new connections again."""
    _set_member_state(ctx, pool, member, partition, "enabled", "enabled")


@member_app.command("disable")
def member_disable(ctx: typer.Context, pool: PoolArgument, member: MemberArgument,
                   partition: PartitionOption = DEFAULT_PARTITION) -> None:
    """Disable a member: it gets no traffic."""
    _set_member_state(ctx, pool, member, partition, "disabled", "disabled")


@member_app.command("drain")
def member_drain(ctx: typer.Context, pool: PoolArgument, member: MemberArgument,
                 partition: PartitionOption = DEFAULT_PARTITION) -> None:
    """Drain a member: it gets no new connections; open ones finish (`member enable` takes it back)."""
    _set_member_state(ctx, pool, member, partition, "drain", "draining")


# -- virtual servers ----------------------------------------------------------------------------

virtual_app = typer.Typer(help="Virtual servers: a destination address:port served by a pool, on a traffic "
                               "group.", no_args_is_help=True)


def _destination(_value: Any, record: Mapping[str, Any]) -> str:
    address, port = record.get("address"), record.get("port")
    if isinstance(address, str) and isinstance(port, int):
        return member_key(address, port)
    return f"{format_value(address)}:{format_value(port)}"


def _rules_summary(rules: Any, _record: Mapping[str, Any]) -> str:
    return str(len(rules)) if isinstance(rules, list) else format_value(rules)


VIRTUAL_COLUMNS = [Column("partition"), Column("name"), Column("destination", render=_destination, no_wrap=True),
                   Column("protocol"), Column("pool"), Column("rules", render=_rules_summary),
                   Column("traffic_group", "traffic group"), Column("enabled"), Column("description")]
_add_read_commands(virtual_app, "VirtualServer", "virtual server", VIRTUAL_COLUMNS, partitioned=True,
                   helps=("List virtual servers.", "Show one virtual server."))

AddressOption = Annotated[str | None, typer.Option("--address", show_default=False,
                                                   help="Destination IPv4 or IPv6 address.")]
PortOption = Annotated[int | None, typer.Option("--port", show_default=False, help="Destination port (1-65535).")]
PoolOption = Annotated[str | None, typer.Option("--pool", show_default=False,
                                                help="The pool: NAME (same partition) or /PARTITION/NAME.")]
TrafficGroupOption = Annotated[str | None, typer.Option(
    "--traffic-group", show_default=False, help="The traffic group whose active device serves it. "
                                                f"\\[default: {DEFAULT_TRAFFIC_GROUP}]")]
EnabledOption = Annotated[bool | None, typer.Option(
    "--enable/--disable", show_default=False, help="Serve traffic or not. \\[default on create: --enable]")]
ProtocolOption = Annotated[ProtocolChoice | None, typer.Option(
    "--protocol", show_default=False,
    help="tcp (forward connections), http (rules), https (rules, TLS with --certificate). \\[default: tcp]")]
CertificateOption = Annotated[list[str] | None, typer.Option(
    "--certificate", metavar="CERTIFICATE", show_default=False,
    help="https: a certificate, NAME or /PARTITION/NAME; the first is the default, others picked by SNI. "
         "Repeatable (on update: replaces the list).")]
RulesFileOption = Annotated[Path | None, typer.Option(
    "--rules-file", metavar="FILE", show_default=False, dir_okay=False,
    help="http/https: a JSON or YAML file with the list of rules, applied in order (on update: replaces them; "
         "[] removes them).")]
ForwardedForOption = Annotated[bool | None, typer.Option(
    "--forwarded-for/--no-forwarded-for", show_default=False,
    help="http/https: add X-Forwarded-For and Forwarded to requests. \\[default on create: --forwarded-for]")]
ProxyProtocolOption = Annotated[bool | None, typer.Option(
    "--proxy-protocol/--no-proxy-protocol", show_default=False,
    help="tcp: send the client's address to members with the PROXY protocol v2. "
         "\\[default on create: --no-proxy-protocol]")]


def _l7_changes(protocol: ProtocolChoice | None, certificates: list[str] | None, rules_file: Path | None,
                forwarded_for: bool | None, proxy_protocol: bool | None) -> dict[str, Any]:
    """The options of http/https virtual servers (and the PROXY protocol) that were given."""
    changes = _changes(protocol=protocol, certificates=certificates or None, forwarded_for=forwarded_for,
                       proxy_protocol=proxy_protocol)
    if rules_file is not None:
        changes["rules"] = read_rules_file(rules_file)
    return changes


@virtual_app.command("create")
def virtual_create(
    ctx: typer.Context,
    name: NameArgument,
    address: Annotated[str, typer.Option("--address", help="Destination IPv4 or IPv6 address.")],
    port: Annotated[int, typer.Option("--port", help="Destination port (1-65535).")],
    partition: PartitionOption = DEFAULT_PARTITION,
    protocol: ProtocolOption = None,
    pool: PoolOption = None,
    certificates: CertificateOption = None,
    rules_file: RulesFileOption = None,
    forwarded_for: ForwardedForOption = None,
    proxy_protocol: ProxyProtocolOption = None,
    traffic_group: TrafficGroupOption = None,
    enabled: EnabledOption = None,
    description: DescriptionOption = None,
) -> None:
    """Create a virtual server."""
    fields = _changes(partition=partition, name=name, address=address, port=port, pool=pool,
                      traffic_group=traffic_group, enabled=enabled, description=description)
    fields |= _l7_changes(protocol, certificates, rules_file, forwarded_for, proxy_protocol)
    obj = _create(ctx, "VirtualServer", **fields)
    _done(ctx, "created", "virtual server", _path(partition, name), obj.to_dict())


@virtual_app.command("update")
def virtual_update(
    ctx: typer.Context,
    name: NameArgument,
    partition: PartitionOption = DEFAULT_PARTITION,
    address: AddressOption = None,
    port: PortOption = None,
    protocol: ProtocolOption = None,
    pool: PoolOption = None,
    no_pool: Annotated[bool, typer.Option("--no-pool", help="Detach the pool.")] = False,
    certificates: CertificateOption = None,
    no_certificates: Annotated[bool, typer.Option("--no-certificates", help="Remove the certificates.")] = False,
    rules_file: RulesFileOption = None,
    forwarded_for: ForwardedForOption = None,
    proxy_protocol: ProxyProtocolOption = None,
    traffic_group: TrafficGroupOption = None,
    enabled: EnabledOption = None,
    description: DescriptionOption = None,
) -> None:
    """Change a virtual server: only the options given are sent."""
    if pool is not None and no_pool:
        raise CliError("--pool and --no-pool contradict each other", target="--pool")
    if certificates and no_certificates:
        raise CliError("--certificate and --no-certificates contradict each other", target="--certificate")
    changes = _changes(address=address, port=port, pool=pool, traffic_group=traffic_group, enabled=enabled,
                       description=description)
    changes |= _l7_changes(protocol, certificates, rules_file, forwarded_for, proxy_protocol)
    if no_pool:
        changes["pool"] = None
    if no_certificates:
        changes["certificates"] = []
    obj = _update(ctx, "VirtualServer", {"partition": partition, "name": name}, changes)
    _done(ctx, "updated", "virtual server", _path(partition, name), obj.to_dict())


VIRTUAL_STATS_FIELDS = ("address", "port", "pool", "listening", "error", "connections_current", "connections_total",
                        "bytes_in", "bytes_out")


StatsDeviceOption = Annotated[str | None, typer.Option(
    "--device", "-d", show_default=False,
    help="The lab device to ask, here or before the command (`tandem --device dev-2 ...`).")]


def _pick_device(ctx: typer.Context, device: str | None) -> None:
    if device is not None:
        _settings(ctx).device = device


def _not_served_here(ctx: typer.Context, exc: Any, what: str) -> None:
    """Re-raise a 404 "not served by this device" with which device to ask instead, when it is known."""
    if exc.status_code != 404 or "not served" not in str(exc.message):
        raise exc
    from tandem.sdk import Failover

    try:
        status = Failover(connect(_settings(ctx))).status()
    except _sdk().TandemError:
        raise exc from None
    groups = status.get("traffic_groups") or []
    actives = sorted({str(g["active_device"]) for g in groups if g.get("active_device")})
    elsewhere = len(actives) == 1 and actives[0] != status.get("device")  # not this device: its error says why
    hint = f"; ask the active device (--device {actives[0]})" if elsewhere else ""
    raise CliError(f"{exc.message}{hint}", target=what, code="not_found") from None


@virtual_app.command("stats")
def virtual_stats(ctx: typer.Context, name: NameArgument, partition: PartitionOption = DEFAULT_PARTITION,
                  device: StatsDeviceOption = None) -> None:
    """Counters of a virtual server as this device serves it now: listening, connections, bytes.

    Only the active device of the virtual server's traffic group serves it.
    """
    _pick_device(ctx, device)
    sdk = _sdk()
    try:
        stats = sdk.VirtualServer(partition=partition, name=name, connection=connect(_settings(ctx))).stats()
    except sdk.TandemError as exc:
        _not_served_here(ctx, exc, name)
    output = _output(ctx)
    if output.json:
        output.print_json(stats)
        return
    fields = [key for key in VIRTUAL_STATS_FIELDS if key in stats] + [k for k in stats if k not in
                                                                       VIRTUAL_STATS_FIELDS]
    output.record(stats, fields=fields, title=f"virtual server {_path(partition, name)}")


_add_delete_command(virtual_app, "VirtualServer", "virtual server", partitioned=True, help="Delete a virtual server.")


# -- users --------------------------------------------------------------------------------------

user_app = typer.Typer(help="API users and their roles (admins only). Passwords are read from a file or "
                            "prompted, never given as arguments.", no_args_is_help=True)
USER_COLUMNS = [Column("name"), Column("role"), Column("partitions"), Column("description")]
_add_read_commands(user_app, "User", "user", USER_COLUMNS, partitioned=False,
                   show=lambda ctx, record: _show(ctx, record, skip=("password",)),
                   helps=("List users.", "Show one user."))

UserPartitionsOption = Annotated[list[str] | None, typer.Option(
    "--partition", "-p", show_default=False,
    help="A partition a manager may change. Repeatable; required for managers, refused for other roles.",
)]
NewPasswordFileOption = Annotated[Path | None, typer.Option(
    "--password-file", dir_okay=False, show_default=False,
    help="File holding the user's new password (at least 8 characters). Without it you are prompted.",
)]


def _new_password(ctx: typer.Context, password_file: Path | None) -> str:
    """The new password: from the file; else prompted twice (hidden) on a terminal; else stdin's first line."""
    if password_file is not None:
        return read_password_file(password_file)
    if sys.stdin.isatty():
        password = typer.prompt("New password", hide_input=True, confirmation_prompt="Repeat the password",
                                err=True)
    else:
        password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    if not password:
        raise CliError("the password is empty")
    return password


@user_app.command("create")
def user_create(
    ctx: typer.Context,
    name: NameArgument,
    role: Annotated[RoleChoice, typer.Option("--role", help="admin: everything; manager: changes objects in its "
                                                      "partitions; auditor: reads.")],
    partitions: UserPartitionsOption = None,
    password_file: NewPasswordFileOption = None,
    description: DescriptionOption = None,
) -> None:
    """Create a user. The password comes from --password-file, else is prompted for twice (hidden), or read
    from stdin when it is not a terminal."""
    password = _new_password(ctx, password_file)
    fields = _changes(name=name, role=role, description=description)
    if partitions:
        fields["partitions"] = list(partitions)
    fields["password"] = password
    obj = _create(ctx, "User", **fields)
    record = {k: v for k, v in obj.to_dict().items() if k != "password"}
    _done(ctx, "created", "user", name, record)


@user_app.command("update")
def user_update(
    ctx: typer.Context,
    name: NameArgument,
    role: Annotated[RoleChoice | None, typer.Option("--role", show_default=False, help="The new role.")] = None,
    partitions: UserPartitionsOption = None,
    password_file: NewPasswordFileOption = None,
    set_password: Annotated[bool, typer.Option(
        "--set-password", help="Prompt (twice, hidden) for a new password.")] = False,
    description: DescriptionOption = None,
) -> None:
    """Change a user: only the options given are sent. --partition replaces the list of partitions."""
    changes = _changes(role=role, description=description)
    if partitions:
        changes["partitions"] = list(partitions)
    elif role is not None and role != "manager":
        changes["partitions"] = []  # only managers are limited to partitions
    if password_file is not None or set_password:
        changes["password"] = _new_password(ctx, password_file)
    obj = _update(ctx, "User", {"name": name}, changes)
    record = {k: v for k, v in obj.to_dict().items() if k != "password"}
    _done(ctx, "updated", "user", name, record)


_add_delete_command(user_app, "User", "user", partitioned=False, help="Delete a user.")


# -- device and jobs ----------------------------------------------------------------------------

device_app = typer.Typer(help="The device itself: name, identity, management URL, version.", no_args_is_help=True)


@device_app.command("show")
def device_show(ctx: typer.Context) -> None:
    """Show the device: name, id, certificate fingerprint, management URL, version, last commit."""
    _show(ctx, connect(_settings(ctx)).device())


job_app = typer.Typer(help="Jobs: long operations (bulk changes, sync) and how they ended.", no_args_is_help=True)
JOB_COLUMNS = [Column("id", no_wrap=True), Column("description"), Column("state"),
               Column("progress", render=lambda v, _r: f"{v * 100:.0f}%" if isinstance(v, int | float) else ""),
               Column("message"), Column("created_at", "created"), Column("finished_at", "finished")]


@job_app.command("list")
def job_list(ctx: typer.Context, filters: FilterOption = None) -> None:
    """List jobs."""
    _list(ctx, "Job", JOB_COLUMNS, filters=filters, empty="no jobs")


@job_app.command("show")
def job_show(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(metavar="ID", help="The job's id.", show_default=False)],
    wait: Annotated[float | None, typer.Option(
        "--wait", min=0, max=60, show_default=False, help="Wait up to this many seconds for the job to end.")] = None,
) -> None:
    """Show one job (its state, progress, result or error)."""
    job = _get(ctx, "Job", id=job_id)
    if wait and not job.ended:
        try:
            job.poll(timeout=wait)
        except _sdk().TandemError as exc:
            if exc.code != "timeout":
                raise
    _show(ctx, job.to_dict())


def groups() -> list[tuple[str, typer.Typer]]:
    """The object command groups, in the order `tandem --help` lists them."""
    from tandem.cli.certificates import certificate_app  # it builds on this module's helpers

    return [
        ("partition", partition_app),
        ("monitor", monitor_app),
        ("certificate", certificate_app),
        ("pool", pool_app),
        ("virtual", virtual_app),
        ("user", user_app),
        ("device", device_app),
        ("job", job_app),
    ]
