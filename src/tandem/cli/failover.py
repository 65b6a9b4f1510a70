"""`tandem failover` (the failover state of a device and the operator's actions) and
`tandem traffic-group` (the traffic groups of the trust domain).

Every command talks to one device, like the other commands (the lab's first device, `--device
dev-2`, or `--url`): failover status, events and actions are that device's own.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from typing import Annotated, Any

import typer

from tandem.cli.connection import Settings, connect
from tandem.cli.errors import CliError
from tandem.cli.output import Column, Output, format_epoch, format_value

ACTIVE = "active"
WAIT_DEFAULT = 5.0
POLL = 0.1

app = typer.Typer(
    help="Failover: which device is active for each traffic group, as the device asked hears it; "
         "events; force standby, offline, online.",
    no_args_is_help=True,
)
traffic_group_app = typer.Typer(
    help="Traffic groups: floating addresses and the virtual servers on them, active on exactly one device "
         "of a sync-failover device group.",
    no_args_is_help=True,
)


def _settings(ctx: typer.Context) -> Settings:
    return ctx.obj if isinstance(ctx.obj, Settings) else Settings()


def _output(ctx: typer.Context) -> Output:
    return _settings(ctx).output


def _failover(ctx: typer.Context, device: str | None = None) -> Any:
    from tandem.sdk import Failover

    settings = _settings(ctx)
    if device is not None:
        settings.device = device  # before the connection is made: the command talks to that lab device
    return Failover(connect(settings))


DeviceOption = Annotated[str | None, typer.Option(
    "--device", "-d", show_default=False,
    help="The lab device to ask, here or before the command (`tandem --device dev-2 failover ...`).")]


# -- rendering ----------------------------------------------------------------------------------

def _member(member: Mapping[str, Any], me: str | None) -> str:
    name = str(member.get("name"))
    score = member.get("score", 100)
    if score != 100:  # trackers down: the score and which
        name += f" (score {score}: {', '.join(member.get('down') or ())} down)"
    if member.get("name") == me:
        return f"{name}: {member.get('state')} (this device)"
    if not member.get("alive"):
        heard = member.get("last_heard_s")
        return f"{name}: dead" + (f" (last heard {heard:g} s ago)" if isinstance(heard, int | float) else "")
    state = "offline" if member.get("offline") else str(member.get("state"))
    heard = member.get("last_heard_s")
    return f"{name}: alive, {state}" + (f" ({heard:g} s ago)" if isinstance(heard, int | float) else "")


def status_rows(status: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per traffic group of a failover status, for the table."""
    me = status.get("device")
    rows = []
    for group in status.get("traffic_groups") or ():
        state = str(group.get("state"))
        if group.get("declined"):
            state += " (forced)"
        rows.append({
            "name": group.get("name"), "state": state, "active_device": group.get("active_device") or "none",
            "ha_order": group.get("ha_order"), "auto_failback": group.get("auto_failback"),
            "members": "; ".join(_member(m, me) for m in group.get("members") or ()),
        })
    return rows


STATUS_COLUMNS = [
    Column("name", "traffic group", no_wrap=True),
    Column("state", "this device"),
    Column("active_device", "active device"),
    Column("ha_order", "HA order"),
    Column("auto_failback", "auto failback"),
    Column("members", "members (alive, state)"),
]


def heartbeat_line(status: Mapping[str, Any]) -> str:
    beat = status.get("heartbeat") or {}
    counters = ", ".join(f"{key} {format_value(beat.get(key))}" for key in ("received", "forged", "replayed",
                                                                                "stale", "malformed") if key in beat)
    if beat.get("timeout") is not None:
        detection = f"dead after {format_value(beat.get('timeout'))} s"
    else:  # adaptive: each member's allowed silence, from what its heartbeats showed
        paths = beat.get("peers") or {}
        detection = "dead after " + (", ".join(
            f"{format_value(path.get('deadline_s'))} s ({name}: {path.get('lost', 0)} lost,"
            f" {path.get('longest_lost_run', 0)} in a row, {format_value(path.get('latest_ms'))} ms late at most)"
            for name, path in sorted(paths.items())) or "3.1 intervals (adaptive)")
    return f"heartbeats every {format_value(beat.get('interval'))} s, {detection}: {counters}"


def paths_line(status: Mapping[str, Any]) -> str | None:
    """Each member's heartbeat paths, up or down (None: every member has one path, up)."""
    peers = (status.get("heartbeat") or {}).get("peers") or {}
    paths = {name: peer.get("paths") or [] for name, peer in sorted(peers.items())}
    if all(len(p) == 1 and p[0].get("up") for p in paths.values()):
        return None
    return "heartbeat paths: " + "; ".join(
        f"{name} " + (", ".join(f"{p.get('address')} {'up' if p.get('up') else 'down'}" for p in member_paths)
                      or "none")
        for name, member_paths in paths.items())


def show_status(output: Output, status: Mapping[str, Any]) -> None:
    """A failover status for people: a line about the device, a table of its traffic groups, the
    heartbeat counters (JSON: the status as the device sent it)."""
    if output.json:
        output.print_json(dict(status))
        return
    device, group = status.get("device"), status.get("device_group")
    state = "offline (takes no traffic group)" if status.get("offline") else "online"
    where = f"device group {group}" if group else "in no sync-failover device group"
    output.out.print(f"{device}: {state}, {where}", style="bold", highlight=False)
    rows = status_rows(status)
    if rows:
        output.records(rows, STATUS_COLUMNS)
    else:
        output.note("no traffic groups" + (f" in device group {group}" if group else ""))
    for group_status in status.get("traffic_groups") or ():
        for address, reason in (group_status.get("address_errors") or {}).items():
            output.note(f"{group_status.get('name')}: cannot add {address}: {reason}")
    output.out.print(heartbeat_line(status), highlight=False)
    paths = paths_line(status)
    if paths:
        output.out.print(paths, highlight=False)


def _wait_status(failover: Any, done: Callable[[dict[str, Any]], bool], wait: float) -> tuple[dict[str, Any], bool]:
    """Poll the device's failover status until `done(status)` or `wait` seconds passed."""
    deadline = time.monotonic() + wait
    while True:
        status = failover.status()
        if done(status) or time.monotonic() >= deadline:
            return status, done(status)
        time.sleep(POLL)


def _group_of(status: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    return next((g for g in status.get("traffic_groups") or () if g.get("name") == name), None)


WaitOption = Annotated[float, typer.Option(
    "--wait", min=0, max=60, help="Seconds to wait for another device to take over (0: do not wait).")]


# -- failover -----------------------------------------------------------------------------------

@app.command("status")
def failover_status(ctx: typer.Context, device: DeviceOption = None) -> None:
    """The device's failover state: per traffic group, its state and the active device; heartbeats.

    Per traffic group: this device's state, the device it hears active, the HA order and what it
    hears of each member (alive, state, when last heard); then the heartbeat counters.
    """
    show_status(_output(ctx), _failover(ctx, device).status())


EVENT_COLUMNS = [
    Column("at", "time", render=lambda v, _r: format_epoch(v), no_wrap=True),
    Column("traffic_group", "traffic group", render=lambda v, r: v or f"({r.get('kind')})", no_wrap=True),
    Column("from_state", "from"),
    Column("to_state", "to"),
    Column("reason"),
]



@app.command("events")
def failover_events(
    ctx: typer.Context,
    traffic_group: Annotated[str | None, typer.Option(
        "--traffic-group", "-t", show_default=False, help="Only this traffic group's events.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=10_000, help="The latest N events.")] = 100,
    follow: Annotated[bool, typer.Option(
        "--follow", "-f", help="Then each event as it happens, until interrupted (one line each; JSON lines "
        "with --output json).")] = False,
    device: DeviceOption = None,
) -> None:
    """The device's failover events, oldest first: time, traffic group (or `(path)`: a heartbeat path lost or
    back), from, to, why."""
    output = _output(ctx)
    if follow:
        with contextlib.suppress(KeyboardInterrupt):
            for record in _failover(ctx, device).watch_events(traffic_group=traffic_group, last=limit):
                output.stream(record, EVENT_COLUMNS)
        return
    records = _failover(ctx, device).events(traffic_group=traffic_group, limit=limit)
    output.records(records, EVENT_COLUMNS, empty="no failover events")


@app.command("force-standby")
def failover_force_standby(
    ctx: typer.Context,
    traffic_group: Annotated[str, typer.Argument(metavar="TRAFFIC_GROUP", show_default=False,
                                                 help="A traffic group the device is active for.")],
    wait: WaitOption = WAIT_DEFAULT,
    device: DeviceOption = None,
) -> None:
    """Make the device, active for TRAFFIC_GROUP, hand it to the next device in HA order.

    It declines the traffic group while another device can take it, until `tandem failover online`.
    """
    output = _output(ctx)
    failover = _failover(ctx, device)
    first = failover.force_standby(traffic_group)
    me = first.get("device")

    def handed_over(status: dict[str, Any]) -> bool:
        group = _group_of(status, traffic_group)
        return group is not None and group.get("active_device") not in (None, me)

    status, done = _wait_status(failover, handed_over, wait) if wait else (first, handed_over(first))
    group = _group_of(status, traffic_group) or {}
    if not output.json:
        if done:
            output.done(f"{me} handed {traffic_group} to {group.get('active_device')}")
        elif group.get("state") == ACTIVE:
            output.note(f"{me} is still active for {traffic_group}: no other device can take it now")
        else:
            output.done(f"{me} is standby for {traffic_group}")
            output.note(f"no device is active for {traffic_group} yet" + (f" after {wait:g} s" if wait else ""))
    show_status(output, status)


@app.command("offline")
def failover_offline(ctx: typer.Context, wait: WaitOption = WAIT_DEFAULT, device: DeviceOption = None) -> None:
    """Take the device out of failover: it takes no traffic group until `tandem failover online`.

    It stays offline across restarts; the other devices take over what it was active for.
    """
    output = _output(ctx)
    failover = _failover(ctx, device)
    first = failover.offline()
    me = first.get("device")

    def taken_over(status: dict[str, Any]) -> bool:
        return all(g.get("active_device") not in (None, me) for g in status.get("traffic_groups") or ())

    status, done = _wait_status(failover, taken_over, wait) if wait else (first, taken_over(first))
    if not output.json:
        output.done(f"{me} is offline: it takes no traffic group")
        if not done:
            output.note("not every traffic group has an active device yet")
    show_status(output, status)


@app.command("online")
def failover_online(ctx: typer.Context, device: DeviceOption = None) -> None:
    """Bring the device back into failover and clear its forced standbys.

    It takes a traffic group back only when no other device is active for it, or when the traffic
    group fails back automatically (--auto-failback).
    """
    output = _output(ctx)
    status = _failover(ctx, device).online()
    if not output.json:
        output.done(f"{status.get('device')} is online")
    show_status(output, status)


# -- traffic groups -----------------------------------------------------------------------------

TRAFFIC_GROUP_COLUMNS = [
    Column("name", no_wrap=True),
    Column("device_group", "device group"),
    Column("ha_order", "HA order"),
    Column("addresses"),
    Column("auto_failback", "auto failback"),
    Column("description"),
]

NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="The traffic group's name.", show_default=False)]
HaOrderOption = Annotated[str | None, typer.Option(
    "--ha-order", metavar="DEV,DEV,...", show_default=False,
    help="Device names, most preferred first, comma-separated. \\[default on create: the group's members by name]")]
AddressesOption = Annotated[list[str] | None, typer.Option(
    "--address", "-a", metavar="IP", show_default=False,
    help="A floating address that moves with the traffic group. Repeatable; on update replaces the list.")]
DescriptionOption = Annotated[str | None, typer.Option("--description", show_default=False, help="Free text.")]
FailbackDelayOption = Annotated[float | None, typer.Option(
    "--failback-delay", min=0, max=3600, show_default=False,
    help="With auto-failback: seconds the preferred device must be in service before it takes the group back.")]
QuorumOption = Annotated[bool | None, typer.Option(
    "--quorum/--no-quorum", show_default=False,
    help="Serve only on a device that hears a majority of the group's members (three or more devices).")]
TrackOption = Annotated[list[str] | None, typer.Option(
    "--track", metavar="TYPE:TARGET[:WEIGHT]", show_default=False,
    help="A tracker: gateway:IPv4 (ICMP echo), script:/absolute/path (exit 0), interface:NAME (up, with carrier) "
         "or pool:/PARTITION/NAME[:WEIGHT[:PERCENT]] (that share of its members up, default 50), weight 1-100 "
         "(default 50); a device scores 100 less the weights of its trackers down, the group lives on the highest "
         "score. Repeatable; on update replaces the list.")]
ScoreHoldOption = Annotated[float | None, typer.Option(
    "--score-hold", min=0, max=600, show_default=False,
    help="Seconds a device must outscore the active one before it takes the group over. \\[default: 0.5]")]


def parse_tracker(text: str) -> dict[str, Any]:
    """`gateway:198.18.0.1:30` → {"type": "gateway", "target": "198.18.0.1", "weight": 30}, `pool:/Common/web:40:75`
    → {..., "weight": 40, "threshold": 75}; CliError if malformed (the device checks each target)."""
    kind, _, rest = text.partition(":")
    if kind == "script":  # a path may hold colons: only a number after the last one is a weight
        head, _, tail = rest.rpartition(":")
        target, weight = (head, tail) if tail.isascii() and tail.isdecimal() else (rest, "")
        numbers = [weight] if weight else []
    else:
        target, *numbers = rest.split(":")
    most = 2 if kind == "pool" else 1
    if kind not in ("gateway", "script", "interface", "pool") or not target or len(numbers) > most or not all(
            n.isascii() and n.isdecimal() and 1 <= int(n) <= 100 for n in numbers):
        raise CliError(f"{text!r} is not TYPE:TARGET[:WEIGHT] (gateway:IPv4, script:/path, interface:NAME or "
                       "pool:/PARTITION/NAME[:WEIGHT[:PERCENT]], numbers 1-100)", target="--track")
    return {"type": kind, "target": target, **dict(zip(("weight", "threshold"), map(int, numbers), strict=False))}


def _failover_fields(failback_delay: float | None, quorum: bool | None, track: list[str] | None,
                     score_hold: float | None) -> dict[str, Any]:
    """The failover options given, as traffic group fields."""
    fields: dict[str, Any] = {}
    if failback_delay is not None:
        fields["failback_delay"] = failback_delay
    if quorum is not None:
        fields["quorum"] = quorum
    if track:
        fields["trackers"] = [parse_tracker(text) for text in track]
    if score_hold is not None:
        fields["score_hold"] = score_hold
    return fields


def parse_names(text: str, option: str = "--ha-order") -> list[str]:
    """`dev-1,dev-2` (spaces allowed) → ["dev-1", "dev-2"]; CliError on an empty item."""
    if text.strip() == "":
        return []
    names = [part.strip() for part in text.split(",")]
    if any(not name for name in names):
        raise CliError(f"{text!r} is not a comma-separated list of device names", target=option)
    return names


def _client(ctx: typer.Context) -> Any:
    return connect(_settings(ctx))


def _done(ctx: typer.Context, verb: str, record: dict[str, Any]) -> None:
    _output(ctx).changed(f"{verb} traffic group {record.get('name')}", record)


@traffic_group_app.command("list")
def traffic_group_list(ctx: typer.Context) -> None:
    """List traffic groups."""
    from tandem.sdk import TrafficGroup

    records = [g.to_dict() for g in TrafficGroup.get_collection(connection=_client(ctx))]
    _output(ctx).records(records, TRAFFIC_GROUP_COLUMNS, empty="no traffic groups")


@traffic_group_app.command("show")
def traffic_group_show(ctx: typer.Context, name: NameArgument) -> None:
    """Show one traffic group (and, for people, its failover state on the device)."""
    from tandem.sdk import TandemError, TrafficGroup

    client = _client(ctx)
    record = TrafficGroup(name=name, connection=client).get().to_dict()
    output = _output(ctx)
    output.record(record)
    if output.json:
        return
    try:
        group = TrafficGroup(name=name).status(connection=client)
    except TandemError as exc:
        if exc.status_code != 404:
            raise
        output.note("this device is not a member of the traffic group's device group")
        return
    output.out.print(f"on this device: {group.get('state')}; active device: {group.get('active_device') or 'none'}",
                     highlight=False)


@traffic_group_app.command("create")
def traffic_group_create(
    ctx: typer.Context,
    name: NameArgument,
    device_group: Annotated[str | None, typer.Option(
        "--device-group", "-g", show_default=False,
        help="The sync-failover device group it fails over in. \\[default: the device's]")] = None,
    ha_order: HaOrderOption = None,
    addresses: AddressesOption = None,
    auto_failback: Annotated[bool, typer.Option(
        "--auto-failback", help="Move back to the first device in HA order whenever it can serve.")] = False,
    failback_delay: FailbackDelayOption = None,
    quorum: QuorumOption = None,
    track: TrackOption = None,
    score_hold: ScoreHoldOption = None,
    description: DescriptionOption = None,
) -> None:
    """Create a traffic group. Virtual servers join it with `tandem virtual create/update --traffic-group`."""
    from tandem.sdk import Failover, TrafficGroup

    client = _client(ctx)
    if device_group is None:
        device_group = Failover(client).status().get("device_group")
        if not device_group:
            raise CliError("the device is in no sync-failover device group: give --device-group",
                           target="--device-group")
    fields: dict[str, Any] = {"name": name, "device_group": device_group}
    if ha_order is not None:
        fields["ha_order"] = parse_names(ha_order)
    if addresses:
        fields["addresses"] = list(addresses)
    if auto_failback:
        fields["auto_failback"] = True
    fields |= _failover_fields(failback_delay, quorum, track, score_hold)
    if description is not None:
        fields["description"] = description
    _done(ctx, "created", TrafficGroup(connection=client, **fields).post().to_dict())


@traffic_group_app.command("update")
def traffic_group_update(
    ctx: typer.Context,
    name: NameArgument,
    device_group: Annotated[str | None, typer.Option(
        "--device-group", "-g", show_default=False, help="The sync-failover device group it fails over in.")] = None,
    ha_order: HaOrderOption = None,
    addresses: AddressesOption = None,
    no_addresses: Annotated[bool, typer.Option("--no-addresses", help="Remove every floating address.")] = False,
    auto_failback: Annotated[bool | None, typer.Option(
        "--auto-failback/--no-auto-failback", show_default=False,
        help="Move back to the first device in HA order whenever it can serve, or not.")] = None,
    failback_delay: FailbackDelayOption = None,
    quorum: QuorumOption = None,
    track: TrackOption = None,
    no_trackers: Annotated[bool, typer.Option("--no-trackers", help="Remove every tracker.")] = False,
    score_hold: ScoreHoldOption = None,
    description: DescriptionOption = None,
) -> None:
    """Change a traffic group: only the options given are sent."""
    from tandem.sdk import TrafficGroup

    if addresses and no_addresses:
        raise CliError("--address and --no-addresses contradict each other", target="--address")
    changes: dict[str, Any] = {}
    if device_group is not None:
        changes["device_group"] = device_group
    if ha_order is not None:
        changes["ha_order"] = parse_names(ha_order)
    if addresses:
        changes["addresses"] = list(addresses)
    if no_addresses:
        changes["addresses"] = []
    if auto_failback is not None:
        changes["auto_failback"] = auto_failback
    if track and no_trackers:
        raise CliError("--track and --no-trackers contradict each other", target="--track")
    changes |= _failover_fields(failback_delay, quorum, track, score_hold)
    if no_trackers:
        changes["trackers"] = []
    if description is not None:
        changes["description"] = description
    if not changes:
        raise CliError("nothing to update: give at least one option to change (see --help)")
    group = TrafficGroup(name=name, connection=_client(ctx)).get()
    for key, value in changes.items():
        setattr(group, key, value)
    _done(ctx, "updated", group.patch().to_dict())


@traffic_group_app.command("delete")
def traffic_group_delete(ctx: typer.Context, name: NameArgument) -> None:
    """Delete a traffic group: its virtual servers are then served by every device that holds them."""
    from tandem.sdk import TrafficGroup

    TrafficGroup(name=name, connection=_client(ctx)).delete()
    output = _output(ctx)
    if output.json:
        output.print_json({"deleted": "traffic group", "name": name})
    else:
        output.done(f"deleted traffic group {name}")
