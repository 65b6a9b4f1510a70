"""Bounds on what a client holds of the management API before its request is in: the size of a request's
head (request line and headers), the time to send it and its body, and the number of open connections.

uvicorn's httptools protocol buffers a head without limit and waits for a body for ever. `LimitedHttpProtocol`
feeds its parser at most `MAX_HEAD_BYTES` of each request's head (keep-alive requests included), answers 431
beyond, closes a connection whose head is not complete within `HEAD_TIMEOUT`, and one whose body is not
complete within `BODY_TIMEOUT` of its headers, one second more for each `BODY_MIN_RATE` bytes received (Apache's
mod_reqtimeout `body=10,MinRate=500`), not counting time this side holds the body back.
"""

import asyncio
from http import HTTPStatus
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tandem.errors import ApiError

MAX_HEAD_BYTES = 64 << 10
"""The request line and headers of one request, at most (a body has its own limit, `limits.MAX_BODY_BYTES`)."""
HEAD_TIMEOUT = 10.0
"""Seconds from a connection's opening, or from a request's first byte, to the end of its headers."""
BODY_TIMEOUT = 10.0
BODY_MIN_RATE = 500
"""A request's body must be complete `BODY_TIMEOUT` seconds after its headers (or after the device last held it
back), plus a second for each `BODY_MIN_RATE` bytes of it received (a body is at most `limits.MAX_BODY_BYTES`)."""
MAX_CONNECTIONS = 256
"""Connections open at once; one more is answered 503 and closed."""
KEEP_ALIVE = 20
"""Seconds an idle connection is kept open between two requests (the SDK sees it closed before reusing it)."""
LINGER = 2.0
"""Seconds a refused connection is still read, its bytes dropped, so that a client still sending reads the
answer instead of a reset."""


class HeaderTooLarge(ApiError):
    status, code = 431, "header_too_large"


class TooManyConnections(ApiError):
    status, code = 503, "unavailable"


class LimitedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol within the bounds above (pass it as `uvicorn.Config(http=...)`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes: int | None = 0
        """Bytes of the current request's head given to the parser; None while its body is read."""
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._body_started = 0.0
        self._body_bytes = 0
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > MAX_CONNECTIONS:
            self._refuse(TooManyConnections(f"{MAX_CONNECTIONS} connections are open already: try again later"))
        else:
            self._head_timer = self.loop.call_later(HEAD_TIMEOUT, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        self._stop_body_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        while data and not self._refused:
            if self._head_bytes is None:
                piece = data[:MAX_HEAD_BYTES]
            elif self._head_bytes >= MAX_HEAD_BYTES:
                self._refuse(HeaderTooLarge(f"request line and headers over {MAX_HEAD_BYTES} bytes",
                                            target="headers"))
                return
            else:
                piece = data[:MAX_HEAD_BYTES - self._head_bytes]
                self._head_bytes += len(piece)
            data = data[len(piece):]
            super().data_received(piece)
            if self.parser is None or self.transport.is_closing() or self.parser.should_upgrade():
                return

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(HEAD_TIMEOUT, self._head_timed_out)

    def on_headers_complete(self) -> None:
        self._stop_head_timer()
        self._head_bytes = None
        self._body_started, self._body_bytes = self.loop.time(), 0
        self._body_timer = self.loop.call_at(self._body_started + BODY_TIMEOUT, self._body_late)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._stop_body_timer()
        super().on_message_complete()
        self._head_bytes = 0

    def _body_late(self) -> None:
        """The body's time is up unless the bytes received bought more, or this side holds the body back (reading
        paused: a request pipelined or a body the application has not read yet; `100 Continue` not sent yet),
        which starts its time again. Closed: the body is not complete."""
        if self.flow.read_paused or (self.cycle is not None and self.cycle.waiting_for_100_continue):
            self._body_started = self.loop.time()
        deadline = self._body_started + BODY_TIMEOUT + self._body_bytes / BODY_MIN_RATE
        if self.loop.time() < deadline:
            self._body_timer = self.loop.call_at(deadline, self._body_late)
        else:
            self._body_timer = None
            self.transport.close()

    def _stop_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        self.transport.close()

    def _refuse(self, error: ApiError) -> None:
        """Answer `error` and close; the parser is given nothing more."""
        self._stop_head_timer()
        self._refused = True
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()  # a response is under way: no room for another
            return
        body = orjson.dumps({"error": error.to_dict()})
        head = [f"HTTP/1.1 {error.status} {HTTPStatus(error.status).phrase}\r\n".encode()]
        head += [name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers]
        head.append(b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body))
        self.transport.write(b"".join(head) + body)
        self.flow.resume_reading()
        self.loop.call_later(LINGER, self.transport.close)
