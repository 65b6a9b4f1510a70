"""The management certificate: what the device's HTTPS API presents to clients.

By default it is the device's identity certificate (self-signed, pinned by peers and clients). An operator may
install a chain signed by the company's CA and its key instead (RSA or ECDSA), and go back to the identity's.
The peer channel keeps the identity whatever the API presents, so installing or renewing a management
certificate never touches the links between members (as BIG-IP's device certificate stays while its
configuration utility's certificate changes). The chain is checked (each certificate issued by the next, the
key the leaf's, the leaf valid now) before anything is written; both files are written whole before either
replaces the one it follows, readable by the owner only. At start a device serves its installed certificate
even once expired (with an error in its log: the expiry metric is for alerting before), and its own when the
installed pair cannot be read: a certificate never keeps a member of the cluster from starting.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from cryptography import x509

from tandem.models.pem import CertificateInfo, check_key, check_validity, info, iso, load_chain
from tandem.trust.identity import Identity, write_private

log = logging.getLogger("tandem.trust")

CERT_FILE, KEY_FILE = "management-cert.pem", "management-key.pem"
Source = Literal["identity", "installed"]


@dataclass(frozen=True)
class ManagementCertificate:
    """The certificate the API presents now: where its files are and what its leaf shows."""

    source: Source
    cert_path: Path
    key_path: Path
    leaf: CertificateInfo
    issuer: str
    chain_length: int

    def view(self, now: datetime | None = None) -> dict:
        """What `GET /api/device/certificate` shows."""
        now = now or datetime.now(UTC)
        return {"source": self.source, "fingerprint": self.leaf.fingerprint, "subjects": list(self.leaf.subjects),
                "issuer": self.issuer, "not_before": iso(self.leaf.not_before), "not_after": iso(self.leaf.not_after),
                "expires_in_days": round((self.leaf.not_after - now).total_seconds() / 86400, 1),
                "status": self.leaf.status(now), "chain_length": self.chain_length}


def checked(chain_pem: str, key_pem: str, *, valid_now: bool = True) -> list[x509.Certificate]:
    """The certificates of a chain (leaf first) fit to serve with `key_pem` (and, with `valid_now`, valid now);
    ValueError naming the field at fault (`certificate: ...`, `key: ...`), never quoting what was given."""
    chain = load_chain(chain_pem)
    check_key(key_pem, chain[0])
    if valid_now:
        check_validity(info(chain[0]))
    return chain


def _described(source: Source, cert_path: Path, key_path: Path, chain: list[x509.Certificate]
               ) -> ManagementCertificate:
    return ManagementCertificate(source, cert_path, key_path, info(chain[0]), chain[0].issuer.rfc4514_string(),
                                 len(chain))


def own(identity: Identity) -> ManagementCertificate:
    """The identity's certificate, as the API presents it."""
    return _described("identity", identity.cert_path, identity.key_path,
                      [x509.load_pem_x509_certificate(identity.cert_path.read_bytes())])


def current(identity: Identity) -> ManagementCertificate:
    """The certificate to serve at start: the installed one when its files are there, else the identity's (also
    when the installed pair cannot be read or does not match: logged as an error)."""
    directory = identity.cert_path.parent
    cert_path, key_path = directory / CERT_FILE, directory / KEY_FILE
    if not cert_path.exists() and not key_path.exists():
        return own(identity)
    try:
        chain = checked(cert_path.read_text(), key_path.read_text(), valid_now=False)
    except (OSError, UnicodeDecodeError, ValueError) as error:
        log.error("the installed management certificate cannot be served (%s): the API presents the device's own;"
                  " install another (`tandem device certificate install`)", error)
        return own(identity)
    presented = _described("installed", cert_path, key_path, chain)
    if presented.leaf.status(datetime.now(UTC)) == "expired":
        log.error("the installed management certificate expired on %s: clients refuse it; renew it (`tandem device"
                  " certificate install`)", iso(presented.leaf.not_after))
    return presented


def install(identity: Identity, chain_pem: str, key_pem: str,
            try_serving: Callable[[Path, Path], None] = lambda _cert, _key: None) -> ManagementCertificate:
    """Check the chain and key (and `try_serving(cert_path, key_path)` on the files written), then keep them as
    the installed management certificate (ValueError or OSError: the files in use are untouched)."""
    chain = checked(chain_pem, key_pem)
    directory = identity.cert_path.parent
    staged = {directory / KEY_FILE: key_pem.encode(), directory / CERT_FILE: chain_pem.encode()}
    new = {path: path.with_name(path.name + ".new") for path in staged}
    try:
        for path, data in staged.items():
            write_private(new[path], data)
        try_serving(new[directory / CERT_FILE], new[directory / KEY_FILE])
    except BaseException:
        for staged_file in new.values():
            staged_file.unlink(missing_ok=True)
        raise
    for path in staged:
        new[path].replace(path)
    return _described("installed", directory / CERT_FILE, directory / KEY_FILE, chain)


def remove(identity: Identity) -> ManagementCertificate:
    """Forget the installed certificate: the API presents the identity's again."""
    directory = identity.cert_path.parent
    for name in (CERT_FILE, KEY_FILE):  # a half-removed pair is not served (`current`)
        (directory / name).unlink(missing_ok=True)
    return own(identity)
