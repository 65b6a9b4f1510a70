"""Client: one authenticated HTTPS connection (a keep-alive pool) to a device's REST API."""

import http.client
import ssl
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlencode, urlsplit

import orjson

from tandem.models.fingerprints import fingerprint, format_fingerprint, normalize_fingerprint
from tandem.sdk import connection
from tandem.sdk.cluster_members import Membership
from tandem.sdk.errors import TandemError
from tandem.sdk.leases import Leases
from tandem.sdk.tls import fetch_certificate, pinned_context
from tandem.sdk.transport import ConnectionPool, Response

USER_AGENT = "tandem-sdk"
_EXPIRY_MARGIN = 30.0
"""Log in again this many seconds before the token expires, instead of waiting for a 401."""


class Client:
    """A connection to one device: `Client("https://10.0.0.1:8443", "admin", "secret", fingerprint=...)`.

    Logs in on the first request that needs it and again when the token expires or is revoked.
    `fingerprint` pins the device's certificate (SHA-256, `sha256:`-prefixed or not, with or
    without ':'); otherwise `verify` is True (system CAs), False (no verification) or a CA file.
    `with client:` makes it the default connection of resources inside the block; it does not
    close it: call `close()`.
    """

    def __init__(
        self,
        url: str,
        username: str | None = None,
        password: str | None = None,
        *,
        token: str | None = None,
        verify: bool | str = True,
        fingerprint: str | None = None,
        timeout: float = 30.0,
        user_agent: str = USER_AGENT,
    ) -> None:
        self.url = url.rstrip("/")
        self.user_agent = user_agent
        """What requests say they come from (an agent: `tandem-agent/HOST_ID`, which the audit trail shows)."""
        try:
            parts = urlsplit(self.url)
            port = parts.port
        except ValueError as exc:
            raise TandemError(None, "bad_url", f"{url!r} is not a URL: {exc}", url) from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise TandemError(None, "bad_url", f"{url!r} is not an http(s)://host[:port] URL", url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = port or (443 if self._https else 80)
        self.username = username
        self._password = password
        self.verify = verify
        self.timeout = timeout
        self.fingerprint: str | None = None
        if fingerprint:
            try:
                self.fingerprint = normalize_fingerprint(fingerprint)
            except ValueError as exc:
                raise TandemError(None, "bad_fingerprint", str(exc), "fingerprint") from None
            if not self._https:
                raise TandemError(None, "bad_url", f"a fingerprint needs an https URL, not {url!r}", url)
        self._token = token
        self._token_expires = float("inf")
        self._pool: ConnectionPool | None = None
        self._lock = threading.Lock()
        self._context_tokens: list[Any] = []

    def __repr__(self) -> str:
        return f"Client({self.url!r}, username={self.username!r})"

    # --- connection -------------------------------------------------------------------

    @property
    def token(self) -> str | None:
        """The current API token (None before the first login)."""
        return self._token

    @property
    def password(self) -> str | None:
        """The password the client logs in with (read-only: adding a device to a trust domain needs it)."""
        return self._password

    def _connect(self) -> ConnectionPool:
        """Open the connection pool, checking the pinned certificate first."""
        with self._lock:
            if self._pool is None:
                context = self._ssl_context() if self._https else None
                self._pool = ConnectionPool(self.url, context, self.timeout)
            return self._pool

    def _ssl_context(self) -> ssl.SSLContext:
        if self.fingerprint:
            try:
                der = fetch_certificate(self._host, self._port, self.timeout)
            except OSError as exc:
                raise TandemError(
                    None, "connection_error", f"cannot fetch the certificate of {self.url}: {exc}", self.url
                ) from exc
            actual = normalize_fingerprint(fingerprint(der))
            if actual != self.fingerprint:
                raise TandemError(
                    None,
                    "fingerprint_mismatch",
                    f"the certificate of {self.url} has fingerprint sha256:{format_fingerprint(actual)}, "
                    f"expected sha256:{format_fingerprint(self.fingerprint)}; no credentials were sent",
                    self.url,
                )
            return pinned_context(der)
        if isinstance(self.verify, str):
            try:
                return ssl.create_default_context(cafile=self.verify)
            except OSError as exc:
                raise TandemError(None, "bad_ca_file", f"cannot load CA file {self.verify!r}: {exc}") from None
        if self.verify:
            return ssl.create_default_context()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context

    def close(self) -> None:
        """Close the connections (a later request opens new ones)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def __enter__(self) -> Self:
        self._context_tokens.append(connection.push(self))
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        connection.pop(self._context_tokens.pop())

    # --- authentication ---------------------------------------------------------------

    @property
    def _can_login(self) -> bool:
        return bool(self.username and self._password)

    def login(self) -> dict[str, Any]:
        """Log in with the username and password; returns the login answer (token, expires_at, role)."""
        if not self._can_login:
            raise TandemError(None, "no_credentials", f"no username and password to log in to {self.url}")
        body = orjson.dumps({"username": self.username, "password": self._password})
        response = self._transmit("POST", "/api/auth/login", body, None, auth=False)
        if response.status_code >= 400:
            raise TandemError.from_response(response)
        data = self._decode(response)
        self._token = data["token"]
        self._token_expires = _relogin_deadline(data.get("expires_at"), response.headers.get("date"))
        return data

    def logout(self) -> None:
        """Revoke the current token on the device and forget it."""
        if self._token is not None:
            try:
                self.send("POST", "/api/auth/logout", relogin=False)
            finally:
                self._token = None

    # --- requests ---------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Send a request to `path` (`/api/...`); the parsed JSON answer, None for an empty one.

        Any 4xx/5xx answer and any connection failure raise TandemError.
        """
        response = self.send(method, path, json=json, params=params, timeout=timeout)
        if response.status_code == 204 or not response.content:
            return None
        return self._decode(response)

    def send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
        auth: bool = True,
        relogin: bool = True,
    ) -> Response:
        """Like `request` but returns the Response (status, headers, content); still raises on 4xx/5xx."""
        content = None if json is None else orjson.dumps(json)
        if params:
            path = f"{path}{'&' if '?' in path else '?'}{urlencode(params)}"
        if auth and self._can_login and (self._token is None or time.monotonic() > self._token_expires):
            self.login()
        response = self._transmit(method, path, content, timeout, auth=auth)
        if response.status_code == 401 and auth and relogin and self._token is not None and self._can_login:
            self.login()
            response = self._transmit(method, path, content, timeout, auth=auth)
        if response.status_code >= 400:
            raise TandemError.from_response(response)
        return response

    def watch(self, path: str, *, params: dict[str, Any] | None = None, timeout: float = 60.0) -> Iterator[Any]:
        """The server-sent events of `path` as they arrive: each event's data, parsed (JSON), until the device
        ends the stream. TandemError when it answers with an error, cannot be reached, or is silent for
        `timeout` seconds (a device's stream says it is alive more often)."""
        if params:
            path = f"{path}{'&' if '?' in path else '?'}{urlencode(params)}"
        if self._can_login and (self._token is None or time.monotonic() > self._token_expires):
            self.login()
        pool = self._pool or self._connect()
        headers = {"accept": "text/event-stream", "user-agent": self.user_agent}
        if self._token is not None:
            headers["authorization"] = f"Bearer {self._token}"
        try:
            with pool.stream(path, headers, timeout) as answer:
                if answer.status != 200:
                    raise TandemError.from_response(Response(answer.status, answer.reason, answer.headers,
                                                             answer.read(), "GET", f"{self.url}{path}"))
                data: list[bytes] = []
                for line in answer:
                    line = line.rstrip(b"\r\n")
                    if line.startswith(b"data:"):
                        data.append(line[5:].lstrip())
                    elif not line and data:
                        yield orjson.loads(b"\n".join(data))
                        data = []
        except TimeoutError as exc:
            raise TandemError(None, "connection_error", f"GET {self.url}{path}: silent for {timeout:.0f} s",
                              self.url) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise TandemError(None, "connection_error", f"cannot reach {self.url}: {exc or type(exc).__name__}",
                              self.url) from exc

    def _transmit(
        self, method: str, path: str, content: bytes | None, timeout: float | None, *, auth: bool
    ) -> Response:
        pool = self._pool or self._connect()
        headers = {"accept": "application/json", "user-agent": self.user_agent}
        if auth and self._token is not None:
            headers["authorization"] = f"Bearer {self._token}"
        if content is not None:
            headers["content-type"] = "application/json"
        try:
            return pool.request(method, path, content, headers, timeout)
        except TimeoutError as exc:
            raise TandemError(
                None, "connection_error", f"{method} {self.url}{path} timed out: {exc}", self.url
            ) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise TandemError(
                None, "connection_error", f"cannot reach {self.url}: {exc or type(exc).__name__}", self.url
            ) from exc

    def _decode(self, response: Response) -> Any:
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise TandemError(
                response.status_code,
                "bad_response",
                f"{response.method} {response.url} answered with non-JSON: {response.text[:200]!r}",
            ) from None

    # --- conveniences -----------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """`GET /api/health` (no credentials needed): `{"status": "ok", "name"}`."""
        return self._decode(self.send("GET", "/api/health", auth=False))

    def device(self) -> dict[str, Any]:
        """`GET /api/device`: name, id, fingerprint, management_url, version, last_commit_id."""
        return self.request("GET", "/api/device")

    def management_certificate(self) -> dict[str, Any]:
        """`GET /api/device/certificate`: the certificate the device's API presents (`source`: `identity` or
        `installed`, fingerprint, subjects, issuer, validity)."""
        return self.request("GET", "/api/device/certificate")

    def install_management_certificate(self, chain: str, key: str) -> dict[str, Any]:
        """`PUT /api/device/certificate` (admins): present this PEM chain (leaf first) and key from now on. The
        device tells its peers first; a client pinning the old fingerprint must pin the new one (or verify by
        the CA: `Client(verify="ca.pem")`)."""
        return self.request("PUT", "/api/device/certificate", json={"certificate": chain, "key": key})

    def revert_management_certificate(self) -> dict[str, Any]:
        """`DELETE /api/device/certificate` (admins): present the device's own identity certificate again."""
        return self.request("DELETE", "/api/device/certificate")

    def backup(self, passphrase: str, timeout: float = 600.0) -> tuple[str, bytes]:
        """`POST /api/backup` (admins): the device's backup archive, sealed with `passphrase` (8 characters or
        more), and the file name the device suggests for it. `tandem restore` puts it back on a rebuilt host."""
        response = self.send("POST", "/api/backup", json={"passphrase": passphrase}, timeout=timeout)
        disposition = response.headers.get("content-disposition") or ""
        name = disposition.partition('filename="')[2].rstrip('"') or "tandem.backup"
        return name, response.content

    def whoami(self) -> dict[str, Any]:
        """`GET /api/auth/whoami`: username, role, partitions."""
        return self.request("GET", "/api/auth/whoami")

    def trust(self) -> dict[str, Any]:
        """`GET /api/trust`: the device's trust domain, `{"domain_id", "devices": [...]}`."""
        return self.request("GET", "/api/trust")

    def batch(self, operations: list[dict[str, Any]], fence: dict[str, Any] | None = None) -> dict[str, Any]:
        """`POST /api/batch`: apply the operations (`{"action", "resource", "partition", "name", "body"}`) in
        one transaction, all or none; `{"applied", "commit"}`. A failure names its operation in `target`.
        A lease holder passes its `fence` (`{"partition", "token", "holder", "scope"}`): the device refuses
        the batch with 409 `lease_lost` if a newer token wrote any name of the scope."""
        body: dict[str, Any] = {"operations": operations}
        if fence is not None:
            body["fence"] = fence
        return self.request("POST", "/api/batch", json=body)

    @property
    def leases(self) -> Leases:
        """The leases kept by the device group: `client.leases.acquire(partition, name, holder, ttl)`."""
        return Leases(self)

    @property
    def cluster(self) -> Membership:
        """The cluster of the device, as its members see it: `client.cluster.get().members.all()`."""
        return Membership(self)


def _relogin_deadline(expires_at: Any, server_date: str | None) -> float:
    """When to log in again (time.monotonic), from the token's expiry and the server's Date header.

    Measuring the lifetime against the server's clock keeps clock skew out of it; infinity (wait
    for a 401) when the device did not say or the lifetime is too short to bother.
    """
    if not isinstance(expires_at, str):
        return float("inf")
    try:
        expires = datetime.fromisoformat(expires_at.replace("Z", "+00:00"))
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=UTC)
        now = parsedate_to_datetime(server_date) if server_date else datetime.now(UTC)
    except (ValueError, TypeError):
        return float("inf")
    lifetime = (expires - now).total_seconds()
    if lifetime <= 2 * _EXPIRY_MARGIN:
        return float("inf")
    return time.monotonic() + lifetime - _EXPIRY_MARGIN
