"""The backup archive: a tar file of a plain manifest and a payload sealed with a passphrase.

`manifest.json` says what the archive holds (device, release, store layout, objects, when) and can be read
without the passphrase. `payload` is a gzip tar of the device's files, encrypted with AES-256-GCM under a key
derived from the passphrase by scrypt; the manifest is its associated data, so neither can be changed, nor a
manifest put on another payload, without the passphrase. A wrong passphrase and a damaged archive are told
apart only as far as the cipher can: either way nothing is restored.
"""

import io
import os
import tarfile
from datetime import datetime
from typing import Annotated

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from pydantic import AfterValidator, BaseModel, Field, ValidationError

FORMAT = 1
MANIFEST, PAYLOAD = "manifest.json", "payload"
MIN_PASSPHRASE = 8
SCRYPT_COST = (2**15, 8, 1)
"""scrypt's cost: about 0.1 s and 32 MiB to derive the key, per guess."""
SALT_BYTES, NONCE_BYTES = 16, 12


def _power_of_two(n: int) -> int:
    if n & (n - 1):
        raise ValueError("scrypt's n must be a power of two")
    return n


class BackupError(Exception):
    """The archive cannot be made or read: the message says why."""


class Manifest(BaseModel):
    """What an archive holds: shown before a restore, and bound to the payload."""

    format: int = FORMAT
    device: str
    device_id: str
    fingerprint: str
    """The device's identity certificate: the one its peers pin."""
    release: str
    schema_version: int
    objects: int
    """Live configuration objects in the store."""
    created_at: datetime
    scrypt: tuple[Annotated[int, Field(ge=2, le=2**17), AfterValidator(_power_of_two)],
                  Annotated[int, Field(ge=1, le=8)], Annotated[int, Field(ge=1, le=4)]] = SCRYPT_COST
    """scrypt's n, r and p for this archive's key (bounded: at most 128 MiB and a few seconds to derive it)."""
    salt: str = Field("", pattern=r"^([0-9a-f]{32})?$")
    """scrypt's salt (hexadecimal), chosen when the archive is sealed."""
    nonce: str = Field("", pattern=r"^([0-9a-f]{24})?$")


def check_passphrase(passphrase: str) -> None:
    """BackupError unless the passphrase is long enough to protect a device's identity."""
    if len(passphrase) < MIN_PASSPHRASE:
        raise BackupError(f"the passphrase needs at least {MIN_PASSPHRASE} characters")


def _key(passphrase: str, salt: bytes, cost: tuple[int, int, int]) -> bytes:
    n, r, p = cost
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode())


def _tar(files: dict[str, bytes], *, compress: bool) -> bytes:
    out = io.BytesIO()
    options = {"mode": "w:gz", "compresslevel": 1} if compress else {"mode": "w"}
    with tarfile.open(fileobj=out, **options) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o600
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _untar(data: bytes, *, compressed: bool) -> dict[str, bytes]:
    files = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz" if compressed else "r:") as tar:
        for member in tar.getmembers():
            extracted = tar.extractfile(member) if member.isfile() else None
            if extracted is None:
                raise BackupError(f"the archive holds {member.name!r}, which is not a file")
            files[member.name] = extracted.read()
    return files


def seal(manifest: Manifest, files: dict[str, bytes], passphrase: str) -> tuple[Manifest, bytes]:
    """The archive of `files` (name: contents) under `manifest`, and the manifest with the salt and nonce chosen
    here."""
    check_passphrase(passphrase)
    salt, nonce = os.urandom(SALT_BYTES), os.urandom(NONCE_BYTES)
    manifest = manifest.model_copy(update={"salt": salt.hex(), "nonce": nonce.hex()})
    manifest_json = manifest.model_dump_json(indent=2).encode()
    payload = AESGCM(_key(passphrase, salt, manifest.scrypt)).encrypt(nonce, _tar(files, compress=True), manifest_json)
    return manifest, _tar({MANIFEST: manifest_json, PAYLOAD: payload}, compress=False)


def _parts(archive: bytes) -> tuple[bytes, bytes]:
    try:
        parts = _untar(archive, compressed=False)
    except (tarfile.TarError, EOFError) as error:
        raise BackupError(f"not a Tandem backup archive ({error})") from None
    if set(parts) != {MANIFEST, PAYLOAD}:
        raise BackupError(f"not a Tandem backup archive (it holds {', '.join(sorted(parts)) or 'nothing'})")
    return parts[MANIFEST], parts[PAYLOAD]


def read_manifest(archive: bytes) -> Manifest:
    """The archive's manifest, read without the passphrase (not yet proven genuine: `unseal` proves it)."""
    manifest_json, _ = _parts(archive)
    try:
        manifest = Manifest.model_validate_json(manifest_json)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise BackupError(f"the archive's manifest is not valid: {where}: {first['msg']}") from None
    if manifest.format != FORMAT:
        raise BackupError(f"the archive is of format {manifest.format}; this release reads format {FORMAT}")
    return manifest


def unseal(archive: bytes, passphrase: str) -> tuple[Manifest, dict[str, bytes]]:
    """The manifest and the files of the archive; BackupError for a wrong passphrase or a damaged archive."""
    manifest = read_manifest(archive)
    manifest_json, payload = _parts(archive)
    if not manifest.salt or not manifest.nonce:
        raise BackupError("the archive's manifest has no salt or nonce: it was not sealed")
    try:
        inner = AESGCM(_key(passphrase, bytes.fromhex(manifest.salt), manifest.scrypt)).decrypt(
            bytes.fromhex(manifest.nonce), payload, manifest_json)
    except InvalidTag:
        raise BackupError("the passphrase is wrong, or the archive was changed or damaged") from None
    except (ValueError, MemoryError):  # scrypt refuses the manifest's cost
        raise BackupError(f"the archive's scrypt cost {manifest.scrypt} cannot be used") from None
    try:
        return manifest, _untar(inner, compressed=True)
    except (tarfile.TarError, EOFError, OSError) as error:
        raise BackupError(f"the archive's payload is damaged ({error})") from None
