"""`tandem device certificate`: the certificate the device's API presents, installed from a CA, or its own again."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tandem.cli.certificates import read_pem
from tandem.cli.connection import Settings, connect
from tandem.models.pem import MAX_CHAIN, MAX_KEY

app = typer.Typer(help="The certificate the device's API presents: its own (self-signed identity) or one signed by "
                       "your CA.", no_args_is_help=True)


def _settings(ctx: typer.Context) -> Settings:
    settings = ctx.find_root().obj
    assert isinstance(settings, Settings)
    return settings


def _shown(ctx: typer.Context, message: str, record: dict) -> None:
    output = _settings(ctx).output
    output.changed(message, record)
    if record.get("peers_not_told"):
        output.note(f"not yet told (they learn it when their link comes back): {', '.join(record['peers_not_told'])}")


@app.command("show")
def certificate_show(ctx: typer.Context) -> None:
    """The certificate presented now: source, fingerprint, names, issuer, validity."""
    _settings(ctx).output.record(connect(_settings(ctx)).management_certificate())


@app.command("install")
def certificate_install(
    ctx: typer.Context,
    cert: Annotated[Path, typer.Option("--cert", dir_okay=False, show_default=False,
                                       help="File holding the PEM chain: the certificate, then its issuers.")],
    key: Annotated[Path, typer.Option("--key", dir_okay=False, show_default=False,
                                      help="File holding its unencrypted PEM private key (RSA or ECDSA).")],
) -> None:
    """Present a CA-signed certificate from now on (also to renew one): the chain and key are checked first, the
    device's peers learn its new fingerprint before it is presented, and their links stay up. Clients then verify
    with --ca-file, or pin the new fingerprint."""
    record = connect(_settings(ctx)).install_management_certificate(read_pem(cert, "--cert", MAX_CHAIN),
                                                                    read_pem(key, "--key", MAX_KEY))
    _shown(ctx, f"the device presents certificate {record['fingerprint']} from now on", record)


@app.command("revert")
def certificate_revert(ctx: typer.Context) -> None:
    """Present the device's own identity certificate again (clients pin its fingerprint)."""
    record = connect(_settings(ctx)).revert_management_certificate()
    _shown(ctx, f"the device presents its own certificate {record['fingerprint']} again", record)
