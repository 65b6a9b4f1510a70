"""`tandem serve`: run one device's daemon in the foreground."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tandem.cli import config_file
from tandem.cli.choices import choices
from tandem.logs import LogFormat, LogLevel
from tandem.models.api import DEFAULT_ENGINE, EngineRequest
from tandem.models.fields import parse_host_port

DEFAULT_LISTEN = "127.0.0.1:8443"
DEFAULT_TOKEN_TTL = 3600.0
EngineOption = choices("EngineOption", EngineRequest)
LogLevelOption = choices("LogLevelOption", LogLevel)
LogFormatOption = choices("LogFormatOption", LogFormat)


def _check_listen(value: str) -> str:
    try:
        parse_host_port(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


def serve(
    name: Annotated[str, typer.Option("--name", help="The device's name (also in its certificate).")],
    data_dir: Annotated[Path, typer.Option(
        "--data-dir", file_okay=False, help="Where the device keeps its store, identity and password file.",
    )],
    config: Annotated[Path | None, typer.Option(
        "--config", dir_okay=False, is_eager=True, callback=config_file.load, show_default=False,
        help="A TOML file of these options (`listen = \"10.0.0.1:8443\"`, `notify = [\"/path\"]`), each key "
             "an option's name without its dashes; the options given here win. An unknown key is refused with its "
             "line.",
    )] = None,
    listen: Annotated[str, typer.Option(
        "--listen", callback=_check_listen, help="Management address ADDR:PORT (IPv6 as [ADDR]:PORT).",
    )] = DEFAULT_LISTEN,
    admin_password_file: Annotated[Path | None, typer.Option(
        "--admin-password-file", dir_okay=False, show_default=False,
        help="File holding the admin password for the first start. Without it (and without "
             "TANDEM_ADMIN_PASSWORD) a password is generated into DATA_DIR/admin-password (mode 0600).",
    )] = None,
    token_ttl: Annotated[float, typer.Option(
        "--token-ttl", min=1.0, help="Lifetime of API tokens, in seconds.",
    )] = DEFAULT_TOKEN_TTL,
    peer_listen: Annotated[str | None, typer.Option(
        "--peer-listen", callback=lambda v: v and _check_listen(v), show_default=False,
        help="Peer channel address ADDR:PORT (default: the management address, port + 1).",
    )] = None,
    peer_advertise: Annotated[str | None, typer.Option(
        "--peer-advertise", callback=lambda v: v and _check_listen(v), show_default=False,
        help="The ADDR:PORT other devices dial for the peer channel (default: --peer-listen).",
    )] = None,
    intercluster_listen: Annotated[str | None, typer.Option(
        "--intercluster-listen", callback=lambda v: v and _check_listen(v), show_default=False,
        help="Where peer clusters reach this device, ADDR:PORT (default: no peering on this device).",
    )] = None,
    heartbeat_address: Annotated[list[str] | None, typer.Option(
        "--heartbeat-address", callback=lambda values: [_check_listen(v) for v in values or []], show_default=False,
        help="A dedicated heartbeat path ADDR:PORT (UDP; on its own network, as a failover address), beside the "
             "peer address; repeatable, up to 7. A peer is taken for gone only when silent on every path.",
    )] = None,
    log_retention: Annotated[int, typer.Option(
        "--log-retention", min=10,
        help="Log records (one per transaction and group) kept; a member further behind gets a full load.",
    )] = 100_000,
    addresses: Annotated[str, typer.Option(
        "--addresses", help="Address provider for floating addresses: loopback (127.0.0.0/8, the lab) or linux.",
    )] = "loopback",
    interface: Annotated[str | None, typer.Option(
        "--interface", show_default=False, help="The interface floating addresses go on (provider linux).",
    )] = None,
    durable: Annotated[bool, typer.Option(
        "--durable", help="Flush every commit to disk (survives a power cut, slower writes).",
    )] = False,
    engine: Annotated[EngineOption, typer.Option(
        "--engine", help="The data plane engine: haproxy, builtin (TCP only), nftables (the kernel: TCP and UDP, as "
        "root), or auto (haproxy when on PATH, else builtin).",
    )] = EngineOption(DEFAULT_ENGINE),
    notify: Annotated[list[Path] | None, typer.Option(
        "--notify", show_default=False, help="A script run at each transition of a traffic group on this device "
        "(as SCRIPT TRAFFIC_GROUP NEW_STATE, the transition in TANDEM_* variables); repeatable.",
    )] = None,
    notify_timeout: Annotated[float, typer.Option(
        "--notify-timeout", min=0.1, help="Seconds a notify script may run before it is killed.",
    )] = 10.0,
    log_level: Annotated[LogLevelOption, typer.Option("--log-level", help="The least severe messages logged.")
                         ] = LogLevelOption("info"),
    log_format: Annotated[LogFormatOption, typer.Option(
        "--log-format", help="text, or json: one object per line (time, level, logger, message, device, process, "
        "and the traffic group or peer where a message names one).")] = LogFormatOption("text"),
    access_log: Annotated[bool, typer.Option(
        "--access-log", help="Log each API request (client, method, path, status).")] = False,
    audit_retention: Annotated[float, typer.Option(
        "--audit-retention", min=0.01, max=36500, help="Days the audit trail (GET /api/audit) keeps an entry.",
    )] = 90.0,
) -> None:
    """Run a device: its HTTPS management API on --listen, its data in --data-dir. Stops on Ctrl-C or SIGTERM."""
    from tandem.daemon import serve as run_daemon  # lazily: keeps `tandem --help` fast

    run_daemon(name=name, data_dir=data_dir, listen=listen, admin_password_file=admin_password_file,
               token_ttl=token_ttl, durable=durable, peer_listen=peer_listen, peer_advertise=peer_advertise,
               log_retention=log_retention, addresses=addresses, interface=interface,
               intercluster_listen=intercluster_listen, engine=engine.value, notify=notify,
               notify_timeout=notify_timeout, heartbeat_addresses=heartbeat_address, log_level=log_level.value,
               log_format=log_format.value, access_log=access_log, audit_retention=audit_retention)
