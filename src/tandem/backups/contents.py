"""What a backup holds of a device, taken from its data directory while it runs, and put back on a rebuilt host.

The archive holds the store (configuration, trust domain records, users, audit trail; not the login tokens),
copied at one point in time, and the identity directory (the key and certificates its peers pin). A restore
writes them into a data directory that holds no device (or, with `force`, replaces a stopped one's) and marks
the store as restored: the device then sends no change of its own until every member of its device groups has
given it what it has of this device's later commits (`tandem.sync.scopes`), so none is numbered twice.
"""

import contextlib
import datetime
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

from tandem._version import __version__
from tandem.backups.archive import BackupError, Manifest, check_passphrase, seal, unseal
from tandem.store.database import SCHEMA_VERSION, STORE_FILE, copy_store, read_meta, write_meta
from tandem.store.lock import Locked, hold
from tandem.sync.scopes import RESTORED
from tandem.trust.identity import CERT_FILE, IDENTITY_DIR, KEY_FILE, IdentityError, load

SCRATCH = ".backup-"
"""The prefix of the directory a backup copies the store into, in the data directory (removed after)."""


def remove_scratch(data_dir: Path) -> None:
    """Remove what a backup or a restore cut short left in `data_dir` (a backup's copy holds the store in clear);
    for the device's start, under its lock."""
    for leftover in [*data_dir.glob(f"{SCRATCH}*"), *data_dir.glob(".restore-*")]:
        shutil.rmtree(leftover, ignore_errors=True)


def take(data_dir: Path, name: str, device_id: str, fingerprint: str, passphrase: str) -> tuple[Manifest, bytes]:
    """The archive of the device kept in `data_dir` (running or not), sealed with `passphrase`."""
    check_passphrase(passphrase)
    try:
        with tempfile.TemporaryDirectory(dir=data_dir, prefix=SCRATCH) as scratch:
            copy = Path(scratch) / STORE_FILE
            objects = copy_store(data_dir / STORE_FILE, copy)
            files = {STORE_FILE: copy.read_bytes()}
            identity = data_dir / IDENTITY_DIR
            files |= {f"{IDENTITY_DIR}/{path.name}": path.read_bytes()
                      for path in sorted(identity.iterdir()) if path.is_file() and not path.name.endswith(".new")}
    except (OSError, sqlite3.Error) as error:
        raise BackupError(f"cannot copy the device's data: {error}") from None
    return seal(Manifest(device=name, device_id=device_id, fingerprint=fingerprint, release=__version__,
                        schema_version=SCHEMA_VERSION, objects=objects, created_at=datetime.datetime.now(datetime.UTC)),
                files, passphrase)


def _checked_files(files: dict[str, bytes]) -> None:
    for name in files:
        directory, _, file = name.rpartition("/")
        if name != STORE_FILE and (directory != IDENTITY_DIR or not file or file.startswith(".")):
            raise BackupError(f"the archive holds {name!r}, which is no part of a device")
    for needed in (STORE_FILE, f"{IDENTITY_DIR}/{KEY_FILE}", f"{IDENTITY_DIR}/{CERT_FILE}"):
        if needed not in files:
            raise BackupError(f"the archive lacks {needed}")


def restore(archive: bytes, data_dir: Path, passphrase: str, *, force: bool = False) -> Manifest:
    """Put the device of `archive` in `data_dir` (which must hold no device, unless `force`: then the device
    there must be stopped); everything is checked before anything is written."""
    manifest, files = unseal(archive, passphrase)
    _checked_files(files)
    if manifest.schema_version > SCHEMA_VERSION:
        raise BackupError(f"the archive was made by release {manifest.release} (store layout"
                          f" {manifest.schema_version}); this release reads up to layout {SCHEMA_VERSION}")
    there = read_meta(data_dir / STORE_FILE, "device_name") if (data_dir / STORE_FILE).exists() else None
    if (data_dir / STORE_FILE).exists() and not force:
        raise BackupError(f"{data_dir} holds device {there or '(unnamed)'!r}: restore into an empty directory, or"
                          " stop that device and restore with --force to replace it")
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        lock = hold(data_dir)  # no device starts on the directory while it is written
    except Locked:
        raise BackupError(f"device {there or '(unnamed)'!r} runs on {data_dir}: stop it first (systemctl stop"
                          " tandem)") from None
    try:
        _write(data_dir, manifest, files)
    finally:
        os.close(lock)
    return manifest


def _write(data_dir: Path, manifest: Manifest, files: dict[str, bytes]) -> None:
    """Stage the archive's files in `data_dir`, check them as a device would open them, then put them in place."""
    with tempfile.TemporaryDirectory(dir=data_dir, prefix=".restore-") as scratch:
        staged = Path(scratch)
        (staged / IDENTITY_DIR).mkdir(mode=0o700)
        for name, data in files.items():
            path = staged / name
            path.touch(mode=0o600)
            path.write_bytes(data)
        try:
            identity = load(staged / IDENTITY_DIR, manifest.device)
            write_meta(staged / STORE_FILE, RESTORED, manifest.created_at.isoformat())
        except IdentityError as error:
            raise BackupError(f"the archive's identity cannot be used: {error}") from None
        except sqlite3.Error as error:
            raise BackupError(f"the archive's store cannot be opened: {error}") from None
        if identity.fingerprint != manifest.fingerprint:
            raise BackupError("the archive's certificate is not the one its manifest names")
        _replace(data_dir, staged)


def _replace(data_dir: Path, staged: Path) -> None:
    """Move the staged store and identity into `data_dir`; what a device there had of them is moved aside first
    (into the staging directory, removed with it), by renames only."""
    aside = staged / "replaced"
    aside.mkdir()
    for name in (STORE_FILE + "-wal", STORE_FILE + "-shm", IDENTITY_DIR, STORE_FILE):
        with contextlib.suppress(FileNotFoundError):
            (data_dir / name).replace(aside / name)
    (staged / IDENTITY_DIR).replace(data_dir / IDENTITY_DIR)
    (staged / STORE_FILE).replace(data_dir / STORE_FILE)
