"""The intercluster wire: length-prefixed JSON frames over TCP, upgraded to TLS-PSK when the relationship asks.

A frame is a 4-byte big-endian length and a JSON object with a string `type`. Anything else ends the
conversation: a peer cluster is a stranger until it proves the relationship's key, and until then
(pairing, a session's handshake) a frame is at most `PREAUTH_MAX_FRAME`.
"""

import asyncio
import contextlib
import ssl
import struct
from typing import Any

import orjson

MAX_FRAME = 64 << 20
"""The largest frame once the other side has authenticated (a mirrored partition goes whole)."""
PREAUTH_MAX_FRAME = 16 << 10
"""The largest frame before then: the messages of pairing and of a session's handshake are well under it.
A larger announced length ends the conversation before the frame is read."""
TIMEOUT = 5.0


class WireError(Exception):
    """The conversation cannot go on: the message says why."""


class Channel:
    """One intercluster connection: frames in and out, one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._calling = asyncio.Lock()
        self.max_frame = PREAUTH_MAX_FRAME
        self.peer_host = str((writer.get_extra_info("peername") or ("?",))[0])

    @classmethod
    async def open(cls, address: str, timeout: float = TIMEOUT) -> "Channel":
        host, _, port = address.rpartition(":")
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host.strip("[]"), int(port)), timeout)
        except (OSError, TimeoutError) as error:
            raise WireError(f"cannot reach {address}: {error or 'timed out'}") from None
        return cls(reader, writer)

    async def send(self, message: dict[str, Any]) -> None:
        data = orjson.dumps(message)
        try:
            self._writer.write(struct.pack(">I", len(data)) + data)
            await self._writer.drain()
        except (OSError, ssl.SSLError) as error:
            raise WireError(f"connection lost: {error}") from None

    async def receive(self, timeout: float | None = TIMEOUT) -> dict[str, Any]:
        try:
            header = await asyncio.wait_for(self._reader.readexactly(4), timeout)
            (length,) = struct.unpack(">I", header)
            if length > self.max_frame:
                raise WireError(f"frame of {length} bytes is over the limit")
            data = await asyncio.wait_for(self._reader.readexactly(length), timeout)
        except asyncio.IncompleteReadError:
            raise WireError("connection closed") from None
        except TimeoutError:
            raise WireError("no answer in time") from None
        except (OSError, ssl.SSLError) as error:
            raise WireError(f"connection lost: {error}") from None
        try:
            message = orjson.loads(data)
        except orjson.JSONDecodeError:
            message = None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise WireError("malformed frame")
        if message["type"] == "error":
            raise RemoteError(str(message.get("code", "error")), str(message.get("message", "")))
        return message

    async def call(self, message: dict[str, Any], timeout: float | None = TIMEOUT) -> dict[str, Any]:
        """Send a request and wait for its answer."""
        async with self._calling:
            await self.send(message)
            return await self.receive(timeout)

    def authenticated(self) -> None:
        """The other side proved the relationship's key: its frames may now be up to `MAX_FRAME`."""
        self.max_frame = MAX_FRAME

    async def fail(self, code: str, message: str) -> None:
        """Tell the other side why the conversation ends (it raises RemoteError there)."""
        with contextlib.suppress(WireError):
            await self.send({"type": "error", "code": code, "message": message})

    async def start_tls(self, context: ssl.SSLContext) -> None:
        try:
            await asyncio.wait_for(self._writer.start_tls(context), TIMEOUT)
        except (OSError, ssl.SSLError, TimeoutError) as error:
            raise WireError(f"TLS handshake failed: {error or 'timed out'}") from None

    @property
    def tls_version(self) -> str | None:
        ssl_object = self._writer.get_extra_info("ssl_object")
        return ssl_object.version() if ssl_object else None

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
            await asyncio.wait_for(self._writer.wait_closed(), 1.0)


class RemoteError(WireError):
    """The other side ended the conversation with an error code and a message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
