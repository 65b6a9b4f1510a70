"""`tandem context`: named connections to devices (`contexts.py`), as kubeconfig's contexts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tandem.cli import contexts
from tandem.cli.connection import Settings, fingerprint_option
from tandem.cli.errors import CliError
from tandem.cli.output import Column

app = typer.Typer(help="Named connections to devices (URL, certificate, user, password file), one of them current: "
                       "commands without --url or --device use it.", no_args_is_help=True)

COLUMNS = [Column("current", ""), Column("name", no_wrap=True), Column("url", no_wrap=True), Column("username"),
           Column("fingerprint"), Column("ca_file", "CA file"), Column("password_file", "password file")]


def _settings(ctx: typer.Context) -> Settings:
    settings = ctx.find_root().obj
    assert isinstance(settings, Settings)
    return settings


@app.command("add")
def context_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The context's name.", show_default=False)],
    url: Annotated[str, typer.Option("--url", help="The device's management URL.", show_default=False)],
    fingerprint: Annotated[str | None, typer.Option(
        "--fingerprint", help="Pin the device's certificate (SHA-256, hex pairs).", show_default=False)] = None,
    ca_file: Annotated[Path | None, typer.Option(
        "--ca-file", dir_okay=False, exists=True, show_default=False,
        help="Verify the device's certificate by this CA bundle (rather than by --fingerprint).")] = None,
    username: Annotated[str | None, typer.Option("--username", "-u", help="The user. \\[default: admin]",
                                                 show_default=False)] = None,
    password_file: Annotated[Path | None, typer.Option(
        "--password-file", dir_okay=False, exists=True, show_default=False,
        help="The file holding the user's password (read at each use; the password is not copied).")] = None,
    use: Annotated[bool, typer.Option("--use", help="Make it the current context.")] = False,
) -> None:
    """Add (or replace) a context."""
    contexts.check_name(name)
    if "://" not in url:
        raise CliError(f"{url!r} is not a URL (like https://192.0.2.10:8443)", target="--url")
    kept = contexts.load()
    kept.contexts[name] = contexts.Context(url=url.rstrip("/"),
                                           fingerprint=fingerprint_option(fingerprint) if fingerprint else None,
                                           ca_file=str(ca_file.resolve()) if ca_file else None, username=username,
                                           password_file=str(password_file.resolve()) if password_file else None)
    if use or kept.current is None:
        kept.current = name
    path = contexts.save(kept)
    _settings(ctx).output.done(f"context {name} saved in {path}" + (" (current)" if kept.current == name else ""))


@app.command("use")
def context_use(ctx: typer.Context, name: Annotated[str, typer.Argument(metavar="NAME", show_default=False)]) -> None:
    """Make NAME the current context."""
    kept = contexts.load()
    kept.named(name)
    kept.current = name
    contexts.save(kept)
    _settings(ctx).output.done(f"current context: {name}")


@app.command("list")
def context_list(ctx: typer.Context) -> None:
    """The contexts; `*` marks the current one."""
    kept = contexts.load()
    rows = [{"current": "*" if name == kept.current else "", "name": name, "url": c.url,
             "username": c.username or "admin", "fingerprint": c.fingerprint or "",
             "ca_file": c.ca_file or "", "password_file": c.password_file or ""}
            for name, c in sorted(kept.contexts.items())]
    _settings(ctx).output.records(rows, COLUMNS, empty="no contexts: add one with `tandem context add`")


@app.command("remove")
def context_remove(ctx: typer.Context,
                   name: Annotated[str, typer.Argument(metavar="NAME", show_default=False)]) -> None:
    """Remove a context (if it was current, none is)."""
    kept = contexts.load()
    kept.named(name)
    del kept.contexts[name]
    if kept.current == name:
        kept.current = None
    contexts.save(kept)
    _settings(ctx).output.done(f"context {name} removed")
