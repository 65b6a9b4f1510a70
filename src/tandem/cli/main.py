"""The `tandem` command: global options and the command groups."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tandem.cli import (
    agent,
    audit,
    backup,
    cluster,
    context,
    device_certificate,
    failover,
    identity,
    lab,
    objects,
    peer,
    serve,
)
from tandem.cli.connection import Settings, close
from tandem.cli.errors import TandemGroup
from tandem.cli.output import Output, OutputFormat
from tandem.lab.state import default_lab_dir

CONNECTION = "Connection"

app = typer.Typer(
    name="tandem",
    cls=TandemGroup,
    help="Tandem: clustered load-balancer appliances. Manage devices, configuration and local labs.\n\n"
         "Without --url, commands talk to the first device of the lab started by `tandem lab up` "
         "(or the one named by --device).",
    no_args_is_help=True,
    add_completion=True,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,  # plain tracebacks for bugs: readable in daemon logs and reports
)


@app.callback()
def main(
    ctx: typer.Context,
    output: Annotated[OutputFormat, typer.Option(
        "--output", "-o", envvar="TANDEM_OUTPUT", case_sensitive=False,
        help="`table` for people, `json` or `yaml` for scripts (lists as arrays, objects as objects on stdout).",
    )] = OutputFormat.table,
    url: Annotated[str | None, typer.Option(
        "--url", envvar="TANDEM_URL", rich_help_panel=CONNECTION, show_default=False,
        help="The device's management URL, e.g. https://192.0.2.10:8443. Default: the lab's device.",
    )] = None,
    username: Annotated[str | None, typer.Option(
        "--username", "-u", envvar="TANDEM_USERNAME", rich_help_panel=CONNECTION, show_default=False,
        help="User to log in as. \\[default: admin]",
    )] = None,
    password_file: Annotated[Path | None, typer.Option(
        "--password-file", rich_help_panel=CONNECTION, show_default=False, dir_okay=False,
        help="File holding the password (or set TANDEM_PASSWORD; never give a password as an argument). "
             "Default for a lab device: its admin password file.",
    )] = None,
    fingerprint: Annotated[str | None, typer.Option(
        "--fingerprint", envvar="TANDEM_FINGERPRINT", rich_help_panel=CONNECTION, show_default=False,
        help="Pin the device's certificate by its SHA-256 fingerprint (hex pairs joined by ':').",
    )] = None,
    ca_file: Annotated[Path | None, typer.Option(
        "--ca-file", envvar="TANDEM_CA_FILE", rich_help_panel=CONNECTION, show_default=False, dir_okay=False,
        help="Verify the device's certificate by this CA bundle (PEM) and its name, rather than by a pin.",
    )] = None,
    insecure: Annotated[bool, typer.Option(
        "--insecure", "-k", rich_help_panel=CONNECTION,
        help="Do not verify the device's certificate (testing only).",
    )] = False,
    device: Annotated[str | None, typer.Option(
        "--device", "-d", envvar="TANDEM_DEVICE", rich_help_panel=CONNECTION, show_default=False,
        help="The device to talk to: a lab device's name, a context's name or a URL. \\[default: the context, else "
             "the lab's first]",
    )] = None,
    context_name: Annotated[str | None, typer.Option(
        "--context", envvar="TANDEM_CONTEXT", rich_help_panel=CONNECTION, show_default=False,
        help="The context to use (`tandem context`). \\[default: the current one]",
    )] = None,
    lab_dir: Annotated[Path | None, typer.Option(
        "--lab-dir", envvar="TANDEM_LAB_DIR", rich_help_panel=CONNECTION, show_default=False, file_okay=False,
        help="Where the lab lives. \\[default: /tmp/tandem-lab]",
    )] = None,
    timeout: Annotated[float, typer.Option(
        "--request-timeout", rich_help_panel=CONNECTION, min=0.1, help="Seconds to wait for each API request.",
    )] = 30.0,
) -> None:
    """Tandem: clustered load-balancer appliances."""
    ctx.obj = Settings(output=Output(output), url=url, username=username, password_file=password_file,
                       fingerprint=fingerprint, ca_file=ca_file, insecure=insecure, device=device,
                       lab_dir=lab_dir or default_lab_dir(), timeout=timeout, context=context_name)
    ctx.call_on_close(lambda: close(ctx.obj))


objects.device_app.add_typer(device_certificate.app, name="certificate")
for name, group in objects.groups():
    app.add_typer(group, name=name, rich_help_panel="Configuration" if name not in ("device", "job") else "Device")
app.add_typer(cluster.app, name="cluster", rich_help_panel="Clustering")
app.add_typer(peer.app, name="peer", rich_help_panel="Clustering")
app.add_typer(agent.app, name="agent", rich_help_panel="Automation")
app.add_typer(failover.app, name="failover", rich_help_panel="Failover")
app.add_typer(failover.traffic_group_app, name="traffic-group", rich_help_panel="Failover")
app.command("serve", rich_help_panel="Device")(serve.serve)
app.add_typer(identity.app, name="identity", rich_help_panel="Device")
app.command("audit", rich_help_panel="Device")(audit.audit)
app.command("backup", rich_help_panel="Device")(backup.backup)
app.command("restore", rich_help_panel="Device")(backup.restore)
app.add_typer(lab.app, name="lab", rich_help_panel="Lab")
app.add_typer(context.app, name="context", rich_help_panel=CONNECTION)
