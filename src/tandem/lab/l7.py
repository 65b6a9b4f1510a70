"""The lab demo's HTTP and HTTPS virtual servers: host rules to two pools, and TLS with a certificate the
lab makes.

Beside virtual server `www` (tcp, on the demo's ADDRESS:PORT) the demo creates, on the same floating
address: pools `web-app` (backend-1) and `web-api` (backend-2); virtual server `www-http` on PORT + 1 whose rules
send host `app.lab` to pool `web-app` and `api.lab` to pool `web-api` (any other host: pool `web`); a lab CA
(`DIR/lab-ca.pem`; its key is never stored) and certificate `lab-tls` it signs for `*.lab` and the
address; virtual server `www-https` on PORT + 2 that terminates TLS with it and has the same rules.
Only HAProxy serves http and https virtual servers: with the builtin engine they exist but are not served.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HTTP_VIRTUAL = "www-http"
HTTPS_VIRTUAL = "www-https"
CERTIFICATE = "lab-tls"
CA_FILE = "lab-ca.pem"
HTTP_OFFSET = 1
HTTPS_OFFSET = 2
L7_ENGINE = "haproxy"
HOST_POOLS = {"app.lab": ("web-app", "backend-1"), "api.lab": ("web-api", "backend-2")}
"""Host → (pool, its one backend)."""
VALIDITY = timedelta(days=365)


@dataclass(frozen=True)
class LabTls:
    """What the lab's TLS needs: its CA (PEM, the trust anchor a client verifies with) and the leaf
    certificate it signed (chain: leaf then CA) with the leaf's key."""

    ca: str
    chain: str
    key: str


def l7_ports(port: int) -> tuple[int, int]:
    """The ports of `www-http` and `www-https` beside the demo's tcp virtual server on `port`."""
    return port + HTTP_OFFSET, port + HTTPS_OFFSET


def make_tls(address: str) -> LabTls:
    """A new lab CA and a leaf it signs for `*.lab`, the demo's hosts and `address` (EC P-256, a year)."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Tandem lab CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
          .not_valid_after(now + VALIDITY)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in ("*.lab", *HOST_POOLS)]
    names.append(x509.IPAddress(ipaddress.ip_address(address)))
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "*.lab")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + VALIDITY)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_pem = ca.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return LabTls(ca_pem, leaf.public_bytes(serialization.Encoding.PEM).decode() + ca_pem, key_pem)


def client_context(ca_file: Path) -> ssl.SSLContext:
    """A TLS client context that trusts the lab CA only."""
    return ssl.create_default_context(cafile=str(ca_file))


def l7_objects(address: str, port: int, backends: dict[str, tuple[str, int]], default_pool: str,
               traffic_group: str, tls: LabTls) -> list[tuple[Any, dict[str, Any]]]:
    """The SDK resources of the L7 demo (`backends`: name → address, port), in the order to create them,
    each with its fields (to change an existing one to)."""
    from tandem.sdk import Certificate, Pool, VirtualServer

    http_port, https_port = l7_ports(port)
    rules = [{"name": pool, "match": {"host": host}, "action": "forward", "pool": pool}
             for host, (pool, _backend) in HOST_POOLS.items()]
    common = {"address": address, "pool": default_pool, "rules": rules, "traffic_group": traffic_group,
              "enabled": True}
    objects: list[tuple[Any, dict[str, Any]]] = []
    for pool, backend in HOST_POOLS.values():
        member_address, member_port = backends[backend]
        fields = {"lb_method": "round-robin", "members": [{"address": member_address, "port": member_port}]}
        objects.append((Pool(name=pool, **fields), fields))
    certificate = {"certificate": tls.chain, "key": tls.key, "description": "made by tandem lab up"}
    objects.append((Certificate(name=CERTIFICATE, **certificate), certificate))
    http = {**common, "port": http_port, "protocol": "http"}
    https = {**common, "port": https_port, "protocol": "https", "certificates": [CERTIFICATE]}
    objects += [(VirtualServer(name=HTTP_VIRTUAL, **http), http), (VirtualServer(name=HTTPS_VIRTUAL, **https), https)]
    return objects
