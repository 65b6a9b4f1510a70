"""The wire: pooled HTTP/1.1 keep-alive connections to one device, on the standard library's http.client.

Kept this thin on purpose: a create through the SDK must cost well under a millisecond of client
CPU, and http.client costs about a third of what a general-purpose client stack does per request.
"""

import contextlib
import http.client
import select
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from urllib.parse import urlsplit

_STALE = (http.client.RemoteDisconnected, ConnectionResetError, ConnectionAbortedError, BrokenPipeError)
"""Failures of a reused keep-alive connection the device closed meanwhile."""

_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


@dataclass(slots=True)
class Response:
    """An answer: status, headers (case-insensitive `.get`), the whole body, and what was asked."""

    status_code: int
    reason_phrase: str
    headers: Message
    content: bytes
    method: str
    url: str

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


class ConnectionPool:
    """Keep-alive connections to the device at `url`, reused last-in first-out; safe across threads.

    Raises OSError (ssl.SSLError, TimeoutError, ConnectionError) or http.client.HTTPException
    when the device cannot be reached or breaks the exchange.
    """

    def __init__(self, url: str, ssl_context: ssl.SSLContext | None, timeout: float, max_idle: int = 8) -> None:
        parts = urlsplit(url)
        self.url = url.rstrip("/")
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self._context = ssl_context
        self._timeout = timeout
        self._max_idle = max_idle
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def request(
        self,
        method: str,
        target: str,
        body: bytes | None,
        headers: dict[str, str],
        timeout: float | None = None,
    ) -> Response:
        """Send one request (`target` is the path and query) and read the whole answer."""
        if "://" in target:  # an absolute link (e.g. a `next` page): keep only its path and query
            split = urlsplit(target)
            target = split.path + (f"?{split.query}" if split.query else "")
        else:
            target = self._prefix + target
        conn, reused = self._checkout()
        try:
            try:
                response = self._exchange(conn, method, target, body, headers, timeout)
            except _STALE:
                if not reused or method not in _IDEMPOTENT:
                    raise
                conn.close()
                response = self._exchange(conn, method, target, body, headers, timeout)
        except BaseException:
            conn.close()
            raise
        self._checkin(conn)
        return response

    def _exchange(
        self,
        conn: http.client.HTTPConnection,
        method: str,
        target: str,
        body: bytes | None,
        headers: dict[str, str],
        timeout: float | None,
    ) -> Response:
        limit = self._timeout if timeout is None else timeout
        if conn.timeout != limit:
            conn.timeout = limit
            if conn.sock is not None:
                conn.sock.settimeout(limit)
        conn.request(method, target, body=body, headers=headers)
        answer = conn.getresponse()
        content = answer.read()
        if answer.will_close:
            conn.close()
        return Response(answer.status, answer.reason, answer.headers, content, method, f"{self.url}{target}")

    @contextlib.contextmanager
    def stream(self, target: str, headers: dict[str, str], timeout: float) -> Iterator[http.client.HTTPResponse]:
        """GET `target` on a connection of its own, closed after: the answer, its body read as it arrives (a
        stream of server-sent events). Raises as `request`."""
        conn = self._new()
        conn.timeout = timeout
        try:
            conn.request("GET", self._prefix + target, headers=headers)
            yield conn.getresponse()
        finally:
            conn.close()

    def _checkout(self) -> tuple[http.client.HTTPConnection, bool]:
        """An idle connection still open (and whether it is reused), else a new one (opened on use)."""
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self._new(), False
            if conn.sock is not None and not _dropped(conn.sock):
                return conn, True
            conn.close()

    def _checkin(self, conn: http.client.HTTPConnection) -> None:
        if conn.sock is None:
            return
        with self._lock:
            if len(self._idle) < self._max_idle:
                self._idle.append(conn)
                return
        conn.close()

    def _new(self) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=self._timeout, context=self._context)
        return http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)

    def close(self) -> None:
        """Close every idle connection."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def _dropped(sock: object) -> bool:
    """True when an idle connection's socket is readable: the device closed it (or broke protocol)."""
    try:
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True
