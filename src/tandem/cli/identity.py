"""`tandem identity`: replace a device's identity (key and certificate) on purpose, while it is stopped.

A device never replaces its identity by itself: peers pin its certificate. These commands work on the data
directory directly; start the device (`tandem serve`) again afterwards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tandem.cli.errors import CliError, output_of

app = typer.Typer(help="The device's identity (key and certificate): regenerate it, or import a kept copy.",
                  no_args_is_help=True)

DataDirOption = Annotated[Path, typer.Option(
    "--data-dir", file_okay=False, help="The stopped device's data directory (as given to `tandem serve`).")]


@app.command("regenerate")
def identity_regenerate(
    ctx: typer.Context,
    data_dir: DataDirOption,
    host: Annotated[list[str] | None, typer.Option(
        "--host", show_default=False,
        help="An address or name for the certificate; repeat for each. Default: those of the current certificate.",
    )] = None,
) -> None:
    """Give the device a new key pair and certificate.

    Its peers and clients must pin the new certificate: remove the device from its cluster and add it again,
    and give clients the new fingerprint."""
    from tandem.device import DeviceError, regenerate_identity

    try:
        identity = regenerate_identity(data_dir, host or None)
    except DeviceError as error:
        raise CliError(str(error), code="identity_error") from None
    output = output_of(ctx)
    output.done(f"new identity for device {identity.name!r}: certificate {identity.fingerprint}",
                {"name": identity.name, "fingerprint": identity.fingerprint})
    output.note("peers and clients that pinned the old certificate no longer trust this device: on another member,"
                " remove it from its cluster (`tandem cluster remove-device`) and add it again (`tandem cluster"
                " add-device`), and give clients the new fingerprint; then start it (`tandem serve`)")


@app.command("import")
def identity_import(
    ctx: typer.Context,
    data_dir: DataDirOption,
    cert: Annotated[Path, typer.Option("--cert", dir_okay=False, help="The certificate (PEM).")],
    key: Annotated[Path, typer.Option("--key", dir_okay=False, help="Its private key (PEM, not encrypted).")],
) -> None:
    """Restore the device's identity from a kept copy of its certificate and key (they must match)."""
    from tandem.device import DeviceError, import_identity

    try:
        identity = import_identity(data_dir, cert, key)
    except DeviceError as error:
        raise CliError(str(error), code="identity_error") from None
    output_of(ctx).done(f"identity imported: certificate {identity.fingerprint}",
                      {"name": identity.name, "fingerprint": identity.fingerprint})
