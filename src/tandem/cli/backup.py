"""`tandem backup` and `tandem restore`: a device's configuration, users, trust domain and identity in one archive
sealed with a passphrase, and that archive put back on a rebuilt host (`tandem.backups`)."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Annotated

import typer

from tandem.cli.connection import Settings, connect
from tandem.cli.errors import CliError, output_of
from tandem.lab.secrets import read_password_file

PassphraseFileOption = Annotated[Path | None, typer.Option(
    "--passphrase-file", dir_okay=False, show_default=False,
    help="File holding the archive's passphrase (8 characters or more). Without it: asked on the terminal.")]
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")


def _passphrase(path: Path | None, *, confirm: bool) -> str:
    if path is not None:
        return read_password_file(path, "--passphrase-file")
    if not sys.stdin.isatty():
        raise CliError("give the passphrase with --passphrase-file (no terminal to ask it on)",
                       target="--passphrase-file")
    return typer.prompt("Passphrase", hide_input=True, confirmation_prompt=confirm)


def _write_new(path: Path, data: bytes) -> None:
    """Write `data` to the new file `path`, readable by its owner only (an archive holds password hashes)."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise CliError(f"{path} exists: name another file with --file", target="--file") from None
    except OSError as error:
        raise CliError(f"cannot write {path}: {error.strerror}", target="--file") from None
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
    except OSError as error:
        path.unlink(missing_ok=True)
        raise CliError(f"cannot write {path}: {error.strerror}", target="--file") from None


def backup(
    ctx: typer.Context,
    file: Annotated[Path | None, typer.Option(
        "--file", "-f", dir_okay=False, show_default=False,
        help="Where to write the archive (a new file). Default: the name the device gives, in this directory.")
    ] = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Save a device's configuration, users, trust domain and identity in one archive (admins).

    The identity's key and the trust domain's secrets are sealed with the passphrase: keep both, apart.
    `tandem restore` puts the archive back on a rebuilt host."""
    settings = ctx.find_root().obj
    assert isinstance(settings, Settings)
    output = settings.output
    passphrase = _passphrase(passphrase_file, confirm=True)
    if len(passphrase) < 8:
        raise CliError("the passphrase needs at least 8 characters", target="--passphrase-file")
    client = connect(settings)
    with output.working(f"backup of {client.url}"):
        suggested, archive = client.backup(passphrase)
    path = file or Path(suggested if SAFE_NAME.match(suggested) else "tandem.backup")
    _write_new(path, archive)
    output.done(f"backup written to {path} ({len(archive) / 1e6:.1f} MB)",
                {"file": str(path), "bytes": len(archive)})


def restore(
    ctx: typer.Context,
    archive: Annotated[Path, typer.Argument(dir_okay=False, show_default=False, help="The archive to restore.")],
    data_dir: Annotated[Path, typer.Option(
        "--data-dir", file_okay=False, help="The data directory to restore into (as given to `tandem serve`).")],
    passphrase_file: PassphraseFileOption = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace the device the data directory holds (it must be stopped).")] = False,
) -> None:
    """Put a device back from its archive on a rebuilt host, while it is stopped; then start it with `tandem serve`.

    Its peers know it again at once (same identity). Its own new changes wait (sync status: Changes Pending) until
    every member of its device groups has sent it what it has of this device's later changes."""
    from tandem.backups.archive import BackupError
    from tandem.backups.contents import restore as restore_archive

    output = output_of(ctx)
    try:
        data = archive.read_bytes()
    except OSError as error:
        raise CliError(f"cannot read {archive}: {error.strerror}", target="ARCHIVE") from None
    passphrase = _passphrase(passphrase_file, confirm=False)
    try:
        with output.working(f"restoring {archive}"):
            manifest = restore_archive(data, data_dir, passphrase, force=force)
    except BackupError as error:
        raise CliError(str(error), code="backup_error") from None
    output.done(f"device {manifest.device!r} restored in {data_dir} from its backup of"
                f" {manifest.created_at:%Y-%m-%d %H:%M:%S} UTC ({manifest.objects} objects, release"
                f" {manifest.release})", manifest.model_dump(mode="json", exclude={"salt", "nonce"}))
    output.note(f"start it: tandem serve --name {manifest.device} --data-dir {data_dir} (and its usual options)")
