"""A certificate authority made by a test (`cryptography`): leaf certificates and their keys as PEM."""

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def key_pem(key: PrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def cert_pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


@dataclass(frozen=True)
class Issued:
    """A leaf certificate: `chain` (leaf then CA, PEM), `key` (PEM; `private`: the key itself), `leaf` (PEM
    alone)."""

    chain: str
    key: str
    leaf: str
    fingerprint: str
    not_after: datetime
    private: PrivateKey


class TestCA:
    """A self-signed CA that issues leaf certificates for names."""

    __test__ = False

    def __init__(self, name: str = "Tandem Test CA") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.now(UTC)
        self.certificate = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(self.key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(self.key, hashes.SHA256()))
        self.pem = cert_pem(self.certificate)

    def issue(self, common_name: str, *dns_names: str, days: float = 365, starts: float = -1,
              rsa_key: bool = False, private: PrivateKey | None = None, ip_addresses: tuple[str, ...] = ()) -> Issued:
        """A leaf for `common_name` (and `dns_names` as SANs), valid from `starts` days from now until `days`
        days from now (negative: in the past), for `private` (a new key unless given)."""
        key = private or (rsa.generate_private_key(65537, 2048) if rsa_key else ec.generate_private_key(ec.SECP256R1()))
        now = datetime.now(UTC)
        builder = (
            x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.certificate.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now + timedelta(days=starts))
            .not_valid_after(now + timedelta(days=days))
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False))
        if dns_names or ip_addresses:
            names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
            names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        leaf = builder.sign(self.key, hashes.SHA256())
        return Issued(cert_pem(leaf) + self.pem, key_pem(key), cert_pem(leaf),
                      leaf.fingerprint(hashes.SHA256()).hex(":"), leaf.not_valid_after_utc, key)
