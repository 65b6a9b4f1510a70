"""A device's identity: an EC key pair and a self-signed certificate naming the device."""

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tandem.models.fingerprints import fingerprint

CERT_VALIDITY = datetime.timedelta(days=3650)


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


def load_or_create(directory: Path, name: str, hosts: list[str]) -> Identity:
    """Load the identity kept in `directory`, creating key and certificate on first start.

    The certificate is its own issuer (a pinned trust anchor, never chained to a CA), names the
    device in its subject and carries `hosts` as subject alternative names.
    """
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_path, cert_path = directory / "key.pem", directory / "cert.pem"
    if not key_path.exists() or not cert_path.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        write_private(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
        cert_path.write_bytes(_self_signed(name, key, hosts).public_bytes(serialization.Encoding.PEM))
    return Identity(name=name, key_path=key_path, cert_path=cert_path,
                    fingerprint=certificate_fingerprint(cert_path.read_bytes()))
