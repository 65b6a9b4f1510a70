"""`tandem certificate`: TLS certificates (a PEM chain and its private key, read from files).

The key file is read and sent, never printed: the device never returns a key, and the SDK object forgets
it once sent.
"""

from pathlib import Path
from typing import Annotated, Any

import typer

from tandem.cli.errors import CliError
from tandem.cli.objects import (
    DescriptionOption,
    NameArgument,
    PartitionOption,
    _add_delete_command,
    _add_read_commands,
    _changes,
    _create,
    _done,
    _path,
    _show,
    _update,
)
from tandem.cli.output import Column
from tandem.models import DEFAULT_PARTITION
from tandem.models.pem import MAX_CHAIN, MAX_KEY

certificate_app = typer.Typer(help="TLS certificates: a PEM chain (leaf first) and its private key, which "
                                   "the device keeps and never shows.", no_args_is_help=True)
CERTIFICATE_COLUMNS = [Column("partition"), Column("name"), Column("subjects"), Column("not_after", "not after"),
                       Column("status"), Column("description")]
SKIPPED = ("certificate",)
"""Not in the table of one certificate (the PEM text; `--output json` has it)."""


def _show_certificate(ctx: typer.Context, record: dict[str, Any]) -> None:
    _show(ctx, record, skip=SKIPPED)


_add_read_commands(certificate_app, "Certificate", "certificate", CERTIFICATE_COLUMNS, partitioned=True,
                   show=_show_certificate, helps=("List certificates.", "Show one certificate (never its key)."))

CertOption = Annotated[Path, typer.Option(
    "--cert", dir_okay=False, show_default=False, help="File holding the PEM chain: the certificate, then its "
                                                       "issuers.")]
KeyOption = Annotated[Path | None, typer.Option(
    "--key", dir_okay=False, show_default=False,
    help="File holding the certificate's unencrypted PEM private key. Without it: a CA bundle (for `pool --tls-ca`).")]


def read_pem(path: Path, option: str, limit: int) -> str:
    """The text of a PEM file given to `option` (at most `limit` characters); CliError if it cannot be read.
    The contents never appear in an error."""
    try:
        with path.open("rb") as file:
            data = file.read(limit + 1)
    except OSError as error:
        raise CliError(f"cannot read {path}: {error.strerror}", target=option) from None
    if len(data) > limit:
        raise CliError(f"{path} is over {limit // 1024} KiB", target=option)
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        raise CliError(f"{path} is not a PEM file (not ASCII text)", target=option) from None


@certificate_app.command("create")
def certificate_create(ctx: typer.Context, name: NameArgument, cert: CertOption, key: KeyOption = None,
                       partition: PartitionOption = DEFAULT_PARTITION,
                       description: DescriptionOption = None) -> None:
    """Create a certificate from a PEM chain file and its key file, or a CA bundle (no key)."""
    fields = _changes(partition=partition, name=name, description=description)
    if key is not None:
        fields["key"] = read_pem(key, "--key", MAX_KEY)
    obj = _create(ctx, "Certificate", **fields, certificate=read_pem(cert, "--cert", MAX_CHAIN))
    _done(ctx, "created", "certificate", _path(partition, name), obj.to_dict(), skip=SKIPPED)


@certificate_app.command("update")
def certificate_update(
    ctx: typer.Context,
    name: NameArgument,
    partition: PartitionOption = DEFAULT_PARTITION,
    cert: Annotated[Path | None, typer.Option(
        "--cert", dir_okay=False, show_default=False, help="File holding the new PEM chain.")] = None,
    key: Annotated[Path | None, typer.Option(
        "--key", dir_okay=False, show_default=False,
        help="File holding the new private key. Without it the stored key stays (and must match --cert).")] = None,
    description: DescriptionOption = None,
) -> None:
    """Change a certificate: only the options given are sent."""
    changes = _changes(description=description)
    if cert is not None:
        changes["certificate"] = read_pem(cert, "--cert", MAX_CHAIN)
    if key is not None:
        changes["key"] = read_pem(key, "--key", MAX_KEY)
    obj = _update(ctx, "Certificate", {"partition": partition, "name": name}, changes)
    _done(ctx, "updated", "certificate", _path(partition, name), obj.to_dict(), skip=SKIPPED)


_add_delete_command(certificate_app, "Certificate", "certificate", partitioned=True,
                    help="Delete a certificate (no virtual server may use it).")
