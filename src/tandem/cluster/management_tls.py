"""The certificate the device's API presents, changed live: installed from a CA, renewed, or the identity's again.

A change is told to the trust domain first: this device's record carries the fingerprint its API presents, and
its peers have that record (or are not connected: they learn it when they are) before the listener presents the
new certificate to new connections. Connections already open keep theirs; the peer channel keeps the identity,
so no link between members drops (`trust.management_cert`).
"""

import asyncio
import logging
import ssl
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from tandem.errors import InsufficientStorage, Invalid
from tandem.sync.engine import SyncEngine
from tandem.trust import management_cert
from tandem.trust.domain import Domain
from tandem.trust.identity import Identity
from tandem.trust.management_cert import ManagementCertificate

log = logging.getLogger("tandem.trust")

PEERS_TIMEOUT = 5.0
"""Seconds a change waits for the connected peers to have this device's new record."""


class ManagementTls:
    """The API's certificate: what it is, and changing it while the device serves."""

    def __init__(self, identity: Identity, domain: Domain, sync: SyncEngine, current: ManagementCertificate) -> None:
        self._identity = identity
        self._domain = domain
        self._sync = sync
        self.current = current
        self._presented: ssl.SSLContext | None = None
        self._context_of: Callable[[Path, Path], ssl.SSLContext] | None = None
        self._changing = asyncio.Lock()
        """One change at a time: what `current` says is what the listener presents."""
        self._changes: set[asyncio.Task] = set()

    def serve_on(self, listener: ssl.SSLContext, context_of: Callable[[Path, Path], ssl.SSLContext]) -> None:
        """Have the API `listener` present the current certificate, and each later one, to every new connection:
        its server-name callback, which runs at each handshake, hands the connection the context made for the
        certificate of the moment by `context_of(cert_path, key_path)` (a context holds one certificate per key
        type, so a new one is made rather than loaded into the listener's)."""
        self._presented, self._context_of = listener, context_of
        listener.sni_callback = self._select

    def _select(self, connection: ssl.SSLObject, _server_name: str | None, context: ssl.SSLContext) -> None:
        if self._presented is not None and self._presented is not context:
            connection.context = self._presented

    def fall_back(self) -> ManagementCertificate:
        """Present the identity's certificate: the installed one could not be served at start (logged)."""
        self.current = management_cert.own(self._identity)
        self._domain.put_device(self._domain.me.model_copy(update={"management_fingerprint": ""}))
        return self.current

    def show(self) -> dict:
        """The certificate presented now: `GET /api/device/certificate`."""
        return self.current.view()

    async def install(self, chain_pem: str, key_pem: str) -> dict:
        """Present this chain (leaf first) and key from now on; 422 naming the field at fault, nothing changed."""
        return await self._whole(self._install(chain_pem, key_pem))

    async def revert(self) -> dict:
        """Present the device's identity certificate again."""
        return await self._whole(self._revert())

    async def _whole(self, change: Coroutine[Any, Any, dict]) -> dict:
        """Run a change to its end even if its caller goes (files, record and listener never disagree)."""
        task = asyncio.ensure_future(change)
        self._changes.add(task)
        task.add_done_callback(self._changes.discard)
        return await asyncio.shield(task)

    async def _install(self, chain_pem: str, key_pem: str) -> dict:
        async with self._changing:
            try:
                installed = management_cert.install(self._identity, chain_pem, key_pem, self._try_serving)
            except ValueError as error:
                field = str(error).partition(":")[0]
                raise Invalid(str(error), target=field if field in ("certificate", "key") else None) from None
            except OSError as error:
                raise InsufficientStorage(f"cannot keep the certificate ({error}); nothing was changed") from None
            return await self._present(installed)

    async def _revert(self) -> dict:
        async with self._changing:
            return await self._present(management_cert.remove(self._identity))

    def _try_serving(self, cert_path: Path, key_path: Path) -> None:
        """ValueError if the TLS library will not serve this pair (a key too weak for its security level, say)."""
        if self._context_of is not None:
            try:
                self._context_of(cert_path, key_path)
            except ssl.SSLError as error:
                raise ValueError(f"certificate: the TLS library will not serve it ({error.reason or error})") from None

    async def _present(self, certificate: ManagementCertificate) -> dict:
        fingerprint = certificate.leaf.fingerprint if certificate.source == "installed" else ""
        context = self._context_of(certificate.cert_path, certificate.key_path) if self._context_of else None
        self._domain.put_device(self._domain.me.model_copy(update={"management_fingerprint": fingerprint}))
        not_told = await self._sync.domain_heard(PEERS_TIMEOUT)
        if context is not None:
            self._presented = context
        self.current = certificate
        log.info("the API presents %s certificate %s (%s) from now on%s",
                 "the installed" if certificate.source == "installed" else "the identity's",
                 certificate.leaf.fingerprint, certificate.issuer,
                 f"; not yet told: {', '.join(not_told)}" if not_told else "")
        return {**certificate.view(), "peers_not_told": not_told}
