"""The backup archive: sealed with a passphrase, bound to its manifest, and checked whole before a restore writes."""

import datetime
import io
import tarfile
from pathlib import Path

import pytest

from tandem.backups.archive import MANIFEST, BackupError, Manifest, read_manifest, seal, unseal
from tandem.backups.contents import restore, take
from tandem.store import Store
from tandem.store.database import SCHEMA_VERSION, STORE_FILE, read_meta
from tandem.sync.scopes import RESTORED
from tandem.trust.identity import IDENTITY_DIR, create

PASSPHRASE = "a passphrase"


@pytest.fixture(scope="module")
def device_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stopped device's data directory: a store with one token and its identity."""
    data_dir = tmp_path_factory.mktemp("device")
    store = Store(data_dir / STORE_FILE)
    store.set_meta("device_name", "dev-1")
    store.add_token("f" * 64, "admin", 1e12)
    store.close()
    create(data_dir / IDENTITY_DIR, "dev-1", ["127.0.0.1"])
    return data_dir


@pytest.fixture(scope="module")
def archive(device_dir: Path) -> tuple[Manifest, bytes]:
    from tandem.trust.identity import load

    identity = load(device_dir / IDENTITY_DIR, "dev-1")
    return take(device_dir, "dev-1", "id-1", identity.fingerprint, PASSPHRASE)


def manifest(**fields) -> Manifest:
    return Manifest(**{"device": "dev-1", "device_id": "id-1", "fingerprint": "00", "release": "0",
                       "schema_version": SCHEMA_VERSION, "objects": 0,
                       "created_at": datetime.datetime.now(datetime.UTC), **fields})


def test_sealed_files_come_back_only_with_the_passphrase() -> None:
    sealed = seal(manifest(), {"a": b"secret bytes"}, PASSPHRASE)[1]
    assert b"secret bytes" not in sealed and read_manifest(sealed).device == "dev-1"
    assert unseal(sealed, PASSPHRASE)[1] == {"a": b"secret bytes"}
    with pytest.raises(BackupError, match="passphrase is wrong"):
        unseal(sealed, "another passphrase")
    with pytest.raises(BackupError, match="at least 8"):
        seal(manifest(), {}, "short")


def test_a_changed_manifest_is_refused() -> None:
    sealed = seal(manifest(), {"a": b"x"}, PASSPHRASE)[1]
    parts = {}
    with tarfile.open(fileobj=io.BytesIO(sealed)) as tar:
        for member in tar.getmembers():
            parts[member.name] = tar.extractfile(member).read()
    parts[MANIFEST] = parts[MANIFEST].replace(b'"objects": 0', b'"objects": 9')
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in parts.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(BackupError, match="changed or damaged"):
        unseal(out.getvalue(), PASSPHRASE)
    with pytest.raises(BackupError, match="not a Tandem backup"):
        read_manifest(b"not a tar file at all")


def test_restore_writes_the_device_without_its_tokens_and_marked_restored(archive, tmp_path: Path) -> None:
    made, sealed = archive
    target = tmp_path / "rebuilt"
    assert restore(sealed, target, PASSPHRASE) == made
    assert read_meta(target / STORE_FILE, "device_name") == "dev-1"
    assert read_meta(target / STORE_FILE, RESTORED) == made.created_at.isoformat()
    store = Store(target / STORE_FILE)
    assert store.token("f" * 64) is None
    store.close()
    assert (target / IDENTITY_DIR / "key.pem").stat().st_mode & 0o777 == 0o600
    with pytest.raises(BackupError, match="holds device 'dev-1'"):
        restore(sealed, target, PASSPHRASE)
    assert restore(sealed, target, PASSPHRASE, force=True) == made


def test_nothing_is_written_for_an_archive_that_cannot_be_restored(archive, tmp_path: Path) -> None:
    made, sealed = archive
    files = unseal(sealed, PASSPHRASE)[1]
    newer = made.model_copy(update={"schema_version": SCHEMA_VERSION + 1})
    cases = {
        "is no part of a device": seal(made, {**files, "../escape": b"x"}, PASSPHRASE)[1],
        "lacks identity/key.pem": seal(made, {k: v for k, v in files.items() if not k.endswith("key.pem")},
                                       PASSPHRASE)[1],
        "reads up to layout": seal(newer, files, PASSPHRASE)[1],
        "not the one its manifest names": seal(made.model_copy(update={"fingerprint": "00"}), files, PASSPHRASE)[1],
    }
    for message, bad in cases.items():
        target = tmp_path / message.replace(" ", "-")
        with pytest.raises(BackupError, match=message):
            restore(bad, target, PASSPHRASE)
        assert not (target / STORE_FILE).exists() and not (target / IDENTITY_DIR).exists()
