"""A device's identity: an EC key pair and a self-signed certificate naming the device.

Peers pin the certificate, so an identity is never replaced silently: a key or certificate that is missing
or unreadable once the device exists is refused (`IdentityError`), and only `regenerate` (a new key pair)
or `import_pair` (a kept copy) replace it, on an operator's command. Both files are readable by their owner
only, in a directory only the owner can enter.
"""

import datetime
import ipaddress
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import NameOID

from tandem.models.fingerprints import fingerprint

CERT_VALIDITY = datetime.timedelta(days=3650)
KEY_FILE, CERT_FILE = "key.pem", "cert.pem"
IDENTITY_DIR = "identity"
"""The identity's directory in a device's data directory."""


class IdentityError(Exception):
    """The identity cannot be used (missing, unreadable, or not a matching pair): the message says why and
    what to do."""


@dataclass(frozen=True)
class Identity:
    """Where a device's key and certificate live, and the certificate's fingerprint."""

    name: str
    key_path: Path
    cert_path: Path
    fingerprint: str


def certificate_fingerprint(cert_pem: bytes) -> str:
    """The fingerprint of a PEM certificate (`tandem.models.fingerprints`)."""
    return fingerprint(x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER))


def write_private(path: Path, data: bytes) -> None:
    """Write a file readable by its owner only (mode 0600), created that way so it is never exposed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def replace_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` (mode 0600) through a new file renamed over it: never half written."""
    new = path.with_name(path.name + ".new")
    write_private(new, data)
    new.replace(path)


def _self_signed(name: str, key: ec.EllipticCurvePrivateKey, hosts: list[str]) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Tandem device")])
    alt_names: list[x509.GeneralName] = [x509.DNSName(name)]
    for host in hosts:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt_names.append(x509.DNSName(host))
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + CERT_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=True,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH,
                                              x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _shown(path: Path) -> str:
    """A file of the identity as the operator knows it: relative to the data directory."""
    return f"{path.parent.name}/{path.name}"


def _advice(directory: Path) -> str:
    data_dir = shlex.quote(str(directory.parent))
    return (f"restore it from a backup (`tandem identity import --data-dir {data_dir} --cert FILE --key FILE`), or"
            f" run `tandem identity regenerate --data-dir {data_dir}` (a new certificate, which its peers and"
            " clients must pin again)")


def _parse_key(data: bytes, where: str) -> ec.EllipticCurvePrivateKey:
    try:
        key: PrivateKeyTypes = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as error:
        raise IdentityError(f"{where} is not a valid private key: {error}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise IdentityError(f"{where} is not a valid private key: an EC key is needed, not {type(key).__name__}")
    return key


def _parse_cert(data: bytes, where: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as error:
        raise IdentityError(f"{where} is not a valid certificate: {error}") from None


def _check_pair(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey, where: str) -> None:
    if cert.public_key() != key.public_key():
        raise IdentityError(f"{where}: the certificate and the private key do not belong together")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise IdentityError(f"{_shown(path)} is missing (this device's identity, pinned by its peers)") from None
    except OSError as error:
        raise IdentityError(f"cannot read {_shown(path)}: {error.strerror or error}") from None


def load(directory: Path, name: str) -> Identity:
    """The identity kept in `directory`, checked (a valid key, a valid certificate, a matching pair);
    `IdentityError` if it cannot be used. Both files are made private (mode 0600) on the way."""
    key_path, cert_path = directory / KEY_FILE, directory / CERT_FILE
    try:
        key_pem, cert_pem = _read(key_path), _read(cert_path)
        key = _parse_key(key_pem, _shown(key_path))
        cert = _parse_cert(cert_pem, _shown(cert_path))
        _check_pair(cert, key, f"{_shown(cert_path)} and {_shown(key_path)}")
    except IdentityError as error:
        raise IdentityError(f"{error}; {_advice(directory)}") from None
    for path in (directory, key_path, cert_path):
        os.chmod(path, 0o700 if path == directory else 0o600)
    return Identity(name=name, key_path=key_path, cert_path=cert_path, fingerprint=certificate_fingerprint(cert_pem))


def create(directory: Path, name: str, hosts: list[str]) -> Identity:
    """A new key pair and certificate in `directory`, replacing any there."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    replace_private(directory / KEY_FILE, key_pem)
    replace_private(directory / CERT_FILE, _self_signed(name, key, hosts).public_bytes(serialization.Encoding.PEM))
    return load(directory, name)


def load_or_create(directory: Path, name: str, hosts: list[str], *, existing: bool = False) -> Identity:
    """Load the identity kept in `directory`, creating key and certificate on first start: when neither file
    is there and the device is new (not `existing`). Anything else missing or broken is an `IdentityError`.

    The certificate is its own issuer (a pinned trust anchor, never chained to a CA), names the
    device in its subject and carries `hosts` as subject alternative names.
    """
    if not existing and not (directory / KEY_FILE).exists() and not (directory / CERT_FILE).exists():
        return create(directory, name, hosts)
    return load(directory, name)


def regenerate(directory: Path, name: str, hosts: list[str] | None = None) -> Identity:
    """Replace the identity in `directory` by a new key pair and certificate for `name`, with `hosts` as
    subject alternative names (default: those of the current certificate, when it is readable)."""
    if hosts is None:
        hosts = _hosts_of(directory / CERT_FILE, name)
    return create(directory, name, hosts)


def _hosts_of(cert_path: Path, name: str) -> list[str]:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return []
    return [str(value) for value in names.get_values_for_type(x509.IPAddress)] + [
        value for value in names.get_values_for_type(x509.DNSName) if value != name]


def import_pair(directory: Path, name: str, cert_pem: bytes, key_pem: bytes) -> Identity:
    """Make the given certificate and key (PEM, a matching pair) the identity in `directory`."""
    key = _parse_key(key_pem, "the key")
    cert = _parse_cert(cert_pem, "the certificate")
    _check_pair(cert, key, "the certificate and the key given")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    replace_private(directory / KEY_FILE, key_pem)
    replace_private(directory / CERT_FILE, cert_pem)
    return load(directory, name)
