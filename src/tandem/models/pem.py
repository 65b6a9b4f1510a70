"""PEM certificate chains and their private keys: the checks a `Certificate` resource passes and what it
shows on read (subject names, expiry, fingerprint, status).

Messages name the field at fault (`certificate: ...`, `key: ...`) and never quote what was given: a key
must not reach an answer or a log line.
"""

import contextlib
import itertools
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from tandem.models.fingerprints import fingerprint

MAX_CHAIN, MAX_KEY = 64 * 1024, 16 * 1024
"""Characters of a chain and of a key."""
MAX_CHAIN_CERTIFICATES = 16
EXPIRING = timedelta(days=30)
"""A certificate that expires within this is `expiring`."""
_LABEL = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----")
_KEY_LABELS = {"PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"}


@dataclass(frozen=True)
class Shown:
    """The read-only fields of a certificate resource."""

    subjects: list[str]
    not_after: str
    fingerprint: str
    status: Literal["valid", "expiring", "expired"]


@dataclass(frozen=True)
class CertificateInfo:
    """What a chain's leaf shows: its subject names (CN, then DNS SANs), validity and fingerprint."""

    subjects: tuple[str, ...]
    not_before: datetime
    not_after: datetime
    fingerprint: str

    def status(self, now: datetime) -> Literal["valid", "expiring", "expired"]:
        """`expired`, `expiring` (within `EXPIRING`) or `valid`."""
        if self.not_after <= now:
            return "expired"
        return "expiring" if self.not_after - now <= EXPIRING else "valid"

    def shown(self, now: datetime) -> Shown:
        """The read-only fields of a certificate resource, at `now`."""
        return Shown(list(self.subjects), iso(self.not_after), self.fingerprint, self.status(now))


def iso(moment: datetime) -> str:
    """ISO 8601 UTC, `Z`-suffixed."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _labels(text: str) -> list[str]:
    return _LABEL.findall(text)


def load_chain(text: str) -> list[x509.Certificate]:
    """The certificates of a PEM chain, leaf first, each issued by the next; ValueError if it is not one."""
    labels = _labels(text)
    if not labels or any(label != "CERTIFICATE" for label in labels):
        raise ValueError("certificate: must hold only PEM CERTIFICATE blocks (the key goes in `key`)")
    if len(labels) > MAX_CHAIN_CERTIFICATES:
        raise ValueError(f"certificate: at most {MAX_CHAIN_CERTIFICATES} certificates in a chain")
    try:
        chain = x509.load_pem_x509_certificates(text.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise ValueError("certificate: not a valid PEM certificate chain") from None
    if len(chain) != len(labels):
        raise ValueError("certificate: not a valid PEM certificate chain")
    for position, (child, issuer) in enumerate(itertools.pairwise(chain)):
        try:
            child.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            raise ValueError(f"certificate: certificate {position} of the chain is not issued by the next one "
                             "(the chain goes leaf first, then each issuer)") from None
    try:  # what a read shows of the leaf must be there
        info(chain[0])
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError("certificate: the first certificate's names or extensions cannot be read") from None
    return chain


def check_key(text: str, leaf: x509.Certificate) -> None:
    """ValueError unless `text` is one unencrypted PEM RSA or ECDSA private key of `leaf`'s public key."""
    labels = _labels(text)
    if len(labels) != 1 or labels[0] not in _KEY_LABELS:
        raise ValueError("key: must be one unencrypted PEM private key (PRIVATE KEY, RSA or EC PRIVATE KEY)")
    try:
        key = serialization.load_pem_private_key(text.encode("ascii"), password=None)
    except (ValueError, TypeError, UnicodeEncodeError, UnsupportedAlgorithm):
        raise ValueError("key: not a valid unencrypted PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError("key: only RSA and ECDSA keys are supported")
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    mine = key.public_key().public_bytes(serialization.Encoding.DER, spki)
    try:
        theirs = leaf.public_key().public_bytes(serialization.Encoding.DER, spki)
    except (ValueError, UnsupportedAlgorithm):
        theirs = None
    if mine != theirs:
        raise ValueError("key: does not match the certificate (the first of the chain)")


def info(leaf: x509.Certificate) -> CertificateInfo:
    """What `leaf` shows."""
    names = [str(a.value) for a in leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    with contextlib.suppress(x509.ExtensionNotFound):
        names += leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName)
    der = leaf.public_bytes(serialization.Encoding.DER)
    return CertificateInfo(tuple(dict.fromkeys(names)), leaf.not_valid_before_utc, leaf.not_valid_after_utc,
                           fingerprint(der))


def chain_info(text: str) -> CertificateInfo:
    """What the leaf of a PEM chain shows (the chain is taken as valid: it was checked when written)."""
    return info(x509.load_pem_x509_certificates(text.encode("ascii"))[0])


def check_validity(certificate: CertificateInfo, now: datetime | None = None) -> None:
    """ValueError if the certificate has expired or is not valid yet."""
    now = now or datetime.now(UTC)
    if certificate.not_after <= now:
        raise ValueError(f"certificate: expired on {iso(certificate.not_after)}")
    if certificate.not_before > now:
        raise ValueError(f"certificate: not valid before {iso(certificate.not_before)}")
