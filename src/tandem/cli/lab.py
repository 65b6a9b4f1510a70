"""`tandem lab`: several devices on this host, one `tandem serve` process each (`tandem.lab` runs them).

Device `dev-i` listens on the i-th loopback address from `--address-base` (all of 127/8 is
local on Linux, so no privileges are needed), on the same port, with its own data directory
`DIR/dev-i` and log `DIR/dev-i/daemon.log`. The lab's state is `DIR/lab.json`.

With two devices or more, `lab up` also forms a cluster of them (unless --no-cluster): dev-1
trusts the others and creates device group `lab` (sync-failover up to 8 devices, sync-only
beyond), partition Common, and the command waits until every device sees it In Sync.

With a sync-failover cluster it also sets up something to curl and watch fail over (unless
--no-demo): two HTTP backends `backend-1` and `backend-2` (`python -m tandem.lab.backends`,
detached processes on 127.0.0.1, free ports, directory `DIR/backend-i`), traffic group
`traffic-group-1` (HA order dev-1..dev-N), an http monitor, pool `web` of the two backends and
virtual server `www` on a floating loopback address (`--vip`, default the address base + 99,
port 8080: 127.0.10.100:8080), and waits until the virtual server answers. Beside it, on the next two
ports, an HTTP virtual server with host rules to two pools and an HTTPS one with a certificate from a CA
the lab makes (`tandem.lab.l7`); only the haproxy engine serves these two.

Each command parses its options, calls the lab (`tandem.lab.plan`, `control`, `status`) and prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from tandem.cli.connection import Settings
from tandem.cli.output import Column, Output
from tandem.cli.serve import EngineOption
from tandem.lab.control import Killed, Restarted, Stopped, kill_process, require_lab, start_again, stop_lab
from tandem.lab.demo import DEMO_MONITOR, DEMO_POOL, DEMO_TRAFFIC_GROUP, DEMO_VIRTUAL, LAB_GROUP, demo_hints, program
from tandem.lab.l7 import HTTP_VIRTUAL, HTTPS_VIRTUAL, L7_ENGINE
from tandem.lab.plan import (
    CLUSTER_TIMEOUT,
    DEFAULT_ADDRESS_BASE,
    DEFAULT_DEVICES,
    DEFAULT_PORT,
    START_TIMEOUT,
    LabRequest,
    LabStarted,
    start_lab,
)
from tandem.lab.secrets import ADMIN_USER
from tandem.lab.state import LabBackend, LabState, default_lab_dir
from tandem.lab.status import LabStatus, lab_status, vip_answer
from tandem.models import DEFAULT_PARTITION
from tandem.models.api import CONSOLE_PATH, DEFAULT_ENGINE

app = typer.Typer(
    help="A local lab: several devices on this host, each on its own loopback address (127.0.10.1, "
         "127.0.10.2, ...) with its own data directory. Other commands use it when no --url is given.",
    no_args_is_help=True,
)

LAB_COLUMNS = [
    Column("name"),
    Column("url", "management URL"),
    Column("fingerprint", "certificate fingerprint (SHA-256)"),
    Column("password_file", "admin password file"),
]
STATUS_COLUMNS = [
    Column("name"),
    Column("url", "URL"),
    Column("pid"),
    Column("state"),
    Column("health"),
    Column("engine", render=lambda v, r: v or "-"),
]
FAILOVER_COLUMN = Column("failover", render=lambda v, r: "-" if v is None else f"{v}" + (
    " (forced)" if r.get("failover_forced") else ""))
BACKEND_COLUMNS = [
    Column("name"),
    Column("url", "URL"),
    Column("pid"),
    Column("state"),
    Column("health"),
]

DirOption = Annotated[Path | None, typer.Option(
    "--dir", file_okay=False, show_default=False,
    help="The lab directory. \\[default: --lab-dir, TANDEM_LAB_DIR or /tmp/tandem-lab]",
)]
NameArgument = Annotated[str, typer.Argument(
    metavar="NAME", help="A lab device (dev-2) or demo backend (backend-1).", show_default=False)]


def _settings(ctx: typer.Context) -> Settings:
    return ctx.obj if isinstance(ctx.obj, Settings) else Settings()


def _lab_dir(ctx: typer.Context, directory: Path | None) -> Path:
    path = directory or _settings(ctx).lab_dir or default_lab_dir()
    return Path(path).absolute()


def _lab_rows(state: LabState) -> list[dict[str, Any]]:
    return [{"name": d.name, "url": d.url, "fingerprint": d.fingerprint, "password_file": d.password_file,
             "pid": d.pid, "data_dir": d.data_dir, "log": d.log} for d in state.devices]


# -- commands -----------------------------------------------------------------------------------

@app.command()
def up(
    ctx: typer.Context,
    devices: Annotated[int, typer.Option("--devices", "-n", min=1, max=64, help="How many devices.")]
    = DEFAULT_DEVICES,
    directory: DirOption = None,
    address_base: Annotated[str, typer.Option(
        "--address-base", help="Loopback address of dev-1; dev-2 gets the next one, and so on.",
    )] = DEFAULT_ADDRESS_BASE,
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Management port (the same on every device).")]
    = DEFAULT_PORT,
    timeout: Annotated[float, typer.Option("--timeout", min=1.0, help="Seconds to wait for the devices to answer.")]
    = START_TIMEOUT,
    no_cluster: Annotated[bool, typer.Option(
        "--no-cluster", help="Do not form a cluster: leave each device alone in its own trust domain.",
    )] = False,
    cluster_timeout: Annotated[float, typer.Option(
        "--cluster-timeout", min=1.0, help="Seconds to wait for the cluster to be In Sync.",
    )] = CLUSTER_TIMEOUT,
    vip: Annotated[str | None, typer.Option(
        "--vip", metavar="ADDR:PORT", show_default=False,
        help="Where the demo virtual server listens (a loopback address). \\[default: --address-base + 99, "
             "port 8080: 127.0.10.100:8080]",
    )] = None,
    no_demo: Annotated[bool, typer.Option(
        "--no-demo", help="No backends, traffic group, pool nor virtual server: only the devices and the cluster.",
    )] = False,
    engine: Annotated[EngineOption, typer.Option(
        "--engine", help="The devices' data plane engine (`tandem serve --engine`).",
    )] = EngineOption(DEFAULT_ENGINE),
) -> None:
    """Start a lab of --devices devices dev-1..dev-N and wait until each one answers.

    With 2 devices or more, also forms a cluster of them: device group `lab` (sync-failover up to 8
    devices, sync-only beyond, partition Common), waited for until In Sync; --no-cluster skips it.

    A sync-failover lab also gets a virtual server to curl and watch fail over (unless --no-demo): two
    HTTP backends (backend-1, backend-2 on 127.0.0.1), traffic group traffic-group-1 (HA order dev-1,
    dev-2, ...), monitor web-http, pool web and virtual server www on --vip, active on dev-1; on the next
    two ports, www-http (host app.lab → pool web-app, api.lab → pool web-api) and www-https (certificate lab-tls
    from a lab CA, DIR/lab-ca.pem), which need --engine haproxy (the builtin engine leaves them unserved).

    Prints each device's management URL, certificate fingerprint and admin password file, the web
    console's address, the group, and how to watch a failover.
    """
    output = _settings(ctx).output
    request = LabRequest(lab_dir=_lab_dir(ctx, directory), devices=devices, address_base=address_base, port=port,
                         timeout=timeout, cluster=not no_cluster, cluster_timeout=cluster_timeout, vip=vip,
                         demo=not no_demo, engine=engine.value)
    started = start_lab(output, request)
    if output.json:
        output.print_json({**started.state.to_dict(), "cluster": started.cluster, "demo": started.demo,
                           "console": [console_url(d.url) for d in started.state.devices]})
        return
    output.records(_lab_rows(started.state), LAB_COLUMNS, title=f"lab in {request.lab_dir}")
    if started.missing_password_files:
        output.note(f"note: no generated admin password file at {', '.join(started.missing_password_files)}")
    _show_console(output, started.state)
    if started.cluster is not None:
        _show_cluster(output, started.cluster)
    if started.demo is not None:
        _show_demo(output, started, request.lab_dir)


def console_url(device_url: str) -> str:
    return device_url.rstrip("/") + CONSOLE_PATH + "/"


def _show_console(output: Output, state: LabState) -> None:
    first = state.devices[0]
    output.out.print()
    output.out.print(f"web console: {console_url(first.url)} (every device serves one on its URL + {CONSOLE_PATH}/); "
                     f"sign in as {ADMIN_USER} with the password in {first.password_file}. The certificate is the "
                     f"device's own: check its fingerprint against the table above.", style="bold", highlight=False,
                     soft_wrap=True)


def _show_cluster(output: Output, group_status: dict[str, Any]) -> None:
    from tandem.cli.cluster import show_status

    output.out.print()
    output.out.print(f"device group {LAB_GROUP} ({group_status.get('type')}, partition {DEFAULT_PARTITION}): "
                     f"{group_status.get('status')}", style="bold", highlight=False)
    show_status(output, group_status, group=False)


def _show_demo(output: Output, started: LabStarted, lab_dir: Path) -> None:
    state, demo = started.state, started.demo or {}
    output.out.print()
    output.out.print(f"virtual server {DEMO_VIRTUAL} on http://{state.vip}/ (traffic group {DEMO_TRAFFIC_GROUP}, "
                     f"active on {demo['active_device']}), pool {DEMO_POOL}: "
                     + ", ".join(f"{b.name} {b.url}" for b in state.backends), style="bold", highlight=False)
    l7 = demo["l7"]
    if l7["served"]:
        output.out.print(f"virtual servers {HTTP_VIRTUAL} on {l7['http']} (host rules) and {HTTPS_VIRTUAL} on "
                         f"{l7['https']} (lab CA: {l7['ca']})", style="bold", highlight=False)
    else:
        output.out.print(f"virtual servers {HTTP_VIRTUAL} on {l7['http']} and {HTTPS_VIRTUAL} on {l7['https']} "
                         f"are created but not served: the builtin engine serves tcp only; they need HAProxy "
                         f"(`lab up --engine {L7_ENGINE}`)", highlight=False)
    output.out.print("Try it:", highlight=False)
    for line in demo_hints(state, lab_dir, l7["served"]):
        output.out.print(f"  {line}", highlight=False, soft_wrap=True)


@app.command()
def down(
    ctx: typer.Context,
    directory: DirOption = None,
    purge: Annotated[bool, typer.Option("--purge", help="Also remove the devices' data directories.")] = False,
) -> None:
    """Stop every device and backend of the lab (SIGTERM, then SIGKILL after 5 s) and forget the lab.

    Data directories are kept, unless --purge.
    """
    output = _settings(ctx).output
    lab_dir = _lab_dir(ctx, directory)
    stopped = stop_lab(lab_dir, require_lab(lab_dir), purge=purge)
    _show_stopped(output, stopped, purge)


def _show_stopped(output: Output, stopped: Stopped, purge: bool) -> None:
    if output.json:
        output.print_json({"dir": str(stopped.lab_dir), "devices": stopped.devices, "backends": stopped.backends,
                           "purged": stopped.purged})
        return
    for name, how in (stopped.devices | stopped.backends).items():
        output.out.print(f"{name}: {how}")
    output.done(f"lab in {stopped.lab_dir} is down" + (" and its data removed" if purge else ""))


@app.command()
def status(ctx: typer.Context, directory: DirOption = None) -> None:
    """Show each lab device and backend: URL, pid, whether it runs and answers; each device's engine and failover state.

    Devices answer /api/health; with the demo, the `failover` column is each device's state for
    traffic-group-1 and the last line says which device is active and what the virtual server answers.
    """
    output = _settings(ctx).output
    lab_dir = _lab_dir(ctx, directory)
    state = require_lab(lab_dir)
    found = lab_status(state)
    if output.json:
        output.print_json(found.devices + found.backends)
        return
    _show_status(output, state, found, lab_dir)


def _show_status(output: Output, state: LabState, found: LabStatus, lab_dir: Path) -> None:
    columns = [*STATUS_COLUMNS, FAILOVER_COLUMN] if state.traffic_group else STATUS_COLUMNS
    output.records(found.devices, columns, title=f"lab in {lab_dir}")
    if found.backends:
        output.records(found.backends, BACKEND_COLUMNS, title=f"backends of pool {DEMO_POOL}")
    if state.vip:
        output.out.print(f"virtual server {DEMO_VIRTUAL} on http://{state.vip}/: active on "
                         f"{', '.join(found.active_devices) or 'no device'}; answers: {vip_answer(state)}",
                         highlight=False)


@app.command()
def kill(ctx: typer.Context, device: NameArgument, directory: DirOption = None) -> None:
    """Kill one device (or backend) with SIGKILL, as a crash would, to watch failover. `lab start` brings it back."""
    output = _settings(ctx).output
    state = require_lab(_lab_dir(ctx, directory))
    killed = kill_process(state, device)
    output.done(f"killed {killed.target.name} (pid {killed.pid})",
                {"name": killed.target.name, "pid": killed.pid, "state": "killed"})
    if not output.json:
        _kill_hint(output, state, killed)


def _kill_hint(output: Output, state: LabState, killed: Killed) -> None:
    name = killed.target.name
    if isinstance(killed.target, LabBackend):
        output.note(f"monitor {DEMO_MONITOR} takes {name} out of pool {DEMO_POOL} within a second or two")
    elif state.traffic_group and killed.others:
        output.note(f"if {name} was active, another device takes {state.traffic_group} over within "
                    f"a second or two: `{program()} failover status --device {killed.others[0]}`")


@app.command()
def start(
    ctx: typer.Context,
    device: NameArgument,
    directory: DirOption = None,
    timeout: Annotated[float, typer.Option("--timeout", min=1.0, help="Seconds to wait for it to answer.")]
    = START_TIMEOUT,
) -> None:
    """Start a stopped lab device (or backend) again, with the same data directory, address and port.

    A device that comes back hears which device is active and stays standby (unless the traffic group
    fails back automatically).
    """
    output = _settings(ctx).output
    state = require_lab(_lab_dir(ctx, directory))
    started = start_again(output, state, device, timeout)
    if isinstance(started.target, LabBackend):
        _show_backend_started(output, started.target)
    else:
        _show_device_started(output, state, started)


def _failover_cell(group: dict[str, Any] | None) -> str:
    if group is None:
        return "?"
    return str(group.get("state")) + (" (forced)" if group.get("declined") else "")


def _show_device_started(output: Output, state: LabState, started: Restarted) -> None:
    name, group = started.target.name, started.failover
    row = next(r for r in _lab_rows(state) if r["name"] == name)
    if output.json:
        output.print_json(row | ({"failover": group} if state.traffic_group else {}))
        return
    output.records([row], LAB_COLUMNS)
    if group is not None:
        output.out.print(f"{name} is {_failover_cell(group)} for {state.traffic_group}; active device: "
                         f"{group.get('active_device') or 'none yet'}", highlight=False)


def _show_backend_started(output: Output, backend: LabBackend) -> None:
    if output.json:
        output.print_json({"name": backend.name, "url": backend.url, "pid": backend.pid, "state": "running"})
        return
    output.done(f"started {backend.name} at {backend.url} (pid {backend.pid})")
    output.note(f"monitor {DEMO_MONITOR} puts it back in pool {DEMO_POOL} within a second or two")
