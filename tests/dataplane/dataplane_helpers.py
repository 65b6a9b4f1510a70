"""Small real servers and clients on loopback for the data-plane tests (one event loop per test)."""

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest

HOST = "127.0.0.1"
TEST_TIMEOUT = 60.0


def _loops() -> dict[str, Callable[[Coroutine[Any, Any, Any]], Any]]:
    loops: dict[str, Callable[[Coroutine[Any, Any, Any]], Any]] = {"asyncio": asyncio.run}
    try:
        import uvloop
    except ImportError:
        pass
    else:
        loops["uvloop"] = uvloop.run
    return loops


LOOPS = _loops()


def async_test(fn: Callable[[], Coroutine[Any, Any, Any]]) -> Callable[[str], Any]:
    """Run an async test once per event loop (asyncio, and uvloop where installed), each time in a
    fresh loop, failing it if it runs past TEST_TIMEOUT."""

    @pytest.mark.parametrize("loop", list(LOOPS))
    def run(loop: str) -> Any:
        async def bounded() -> Any:
            async with asyncio.timeout(TEST_TIMEOUT):
                return await fn()

        return LOOPS[loop](bounded())

    run.__name__, run.__qualname__, run.__doc__ = fn.__name__, fn.__qualname__, fn.__doc__
    return run


async def until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Wait until `predicate()` holds (polling), or fail."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def closed_port() -> int:
    """A loopback port nothing listens on (it was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Backend:
    """A stream server on loopback running `handler` for each connection; counts connections."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.accepted = 0
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self, port: int = 0) -> "Backend":
        self.server = await asyncio.start_server(self._handle, HOST, port, reuse_address=True)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            await self.handler(reader, writer)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


class HttpBackend(Backend):
    """Answers one HTTP request per connection with `status` and its name as the body, then closes.
    Remembers the request heads it saw."""

    def __init__(self, name: str, status: int = 200) -> None:
        super().__init__(self._answer)
        self.name = name
        self.status = status
        self.requests: list[bytes] = []

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        self.requests.append(head)
        body = self.name.encode()
        writer.write(b"HTTP/1.0 %d X\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                     % (self.status, len(body), body))
        await writer.drain()


async def hold(name: str) -> Backend:
    """A backend that says its name on connect, then holds the connection until the client closes."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(name.encode() + b"\n")
        await reader.read()

    return await Backend(handler).start()


async def http_get(port: int, host: str = HOST, path: str = "/") -> bytes:
    """One HTTP/1.0 GET; the whole answer (read until the server closes)."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET {path} HTTP/1.0\r\nHost: test\r\n\r\n".encode())
    answer = await reader.read()
    writer.close()
    return answer


def body(answer: bytes) -> bytes:
    return answer.partition(b"\r\n\r\n")[2]
