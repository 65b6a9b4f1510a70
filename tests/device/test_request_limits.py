"""The management API bounds what a client holds before its request is in (docs/api.md, Limits): the
request line and headers (431), the time to send them and the body, and the connections open at once (503)."""

import asyncio
import ssl
import time
from pathlib import Path

import httpx
import orjson
import pytest

from devices import RunningDevice
from tandem.api.http_limits import BODY_TIMEOUT, HEAD_TIMEOUT, MAX_CONNECTIONS, MAX_HEAD_BYTES

BIG = 32 << 20
"""Bytes of the header line the attack sends: buffered whole, two of them would grow the daemon by 64 MB and more."""
GROWTH_ALLOWED = 24 << 20


def _tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def _connect(device: RunningDevice) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(device.host, device.port, ssl=_tls())


async def _answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
    status_line, *lines = head.decode().split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines if line)}
    body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), 60)
    return int(status_line.split()[1]), headers, body


def _request(target: str = "/api/health", extra: bytes = b"") -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: device\r\n".encode() + extra + b"\r\n"


async def _sent_whole_and_answered(device: RunningDevice, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Write `request` (the transport sends it on while the answer is read) and read the answer."""
    reader, writer = await _connect(device)
    try:
        writer.write(request)
        return await _answer(reader)
    finally:
        writer.transport.abort()


def _memory_kib(pid: int, field: str) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split(f"{field}:")[1].split()[0])


def _is_header_too_large(status: int, headers: dict[str, str], body: bytes) -> None:
    assert status == 431, (status, body[:200])
    assert headers["connection"] == "close"
    assert orjson.loads(body)["error"]["code"] == "header_too_large"
    assert set(orjson.loads(body)["error"]) == {"code", "message", "target"}


def test_huge_header_line_is_refused_with_431_without_buffering_it(shared_device: RunningDevice) -> None:
    pid = shared_device.process.pid
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM (the peak) starts again from the present RSS
    before = _memory_kib(pid, "VmRSS")
    request = _request(extra=b"X-Big: " + b"a" * BIG + b"\r\n")

    async def attack() -> list[tuple[int, dict[str, str], bytes]]:
        return await asyncio.gather(*(_sent_whole_and_answered(shared_device, request) for _ in range(2)))

    for answer in asyncio.run(attack()):
        _is_header_too_large(*answer)
    peak = _memory_kib(pid, "VmHWM")
    assert (peak - before) * 1024 < GROWTH_ALLOWED, f"the daemon grew from {before} to {peak} KiB"
    assert httpx.get(f"{shared_device.url}/api/health", verify=False, timeout=30).status_code == 200


@pytest.mark.parametrize("too_large", [
    _request(extra=b"X-Big: " + b"c" * 2 * MAX_HEAD_BYTES + b"\r\n"),
    _request("/api/health?q=" + "c" * 2 * MAX_HEAD_BYTES),
], ids=["header", "request-line"])
def test_head_limit_holds_for_each_request_of_a_keep_alive_connection(shared_device: RunningDevice,
                                                                      too_large: bytes) -> None:
    async def exchange() -> list[tuple[int, dict[str, str], bytes]]:
        reader, writer = await _connect(shared_device)
        try:
            writer.write(_request(extra=b"X-Fine: " + b"b" * (MAX_HEAD_BYTES // 2) + b"\r\n"))
            first = await _answer(reader)
            writer.write(too_large)
            return [first, await _answer(reader)]
        finally:
            writer.transport.abort()

    first, second = asyncio.run(exchange())
    assert first[0] == 200, first
    _is_header_too_large(*second)


def test_head_or_body_not_complete_in_time_is_closed(shared_device: RunningDevice) -> None:
    """Slowloris: a connection that sends nothing, one that sends a header a second, and one that sends its body a
    byte a second are all closed."""

    async def closed_after(first: bytes, trickled: bytes, timeout: float) -> float:
        start = time.monotonic()
        reader, writer = await _connect(shared_device)
        try:
            writer.write(first)

            async def send_slowly() -> None:
                for index in range(int(timeout) + 30):
                    await asyncio.sleep(1)
                    writer.write(trickled.replace(b"%d", b"%d" % index))

            sender = asyncio.create_task(send_slowly()) if trickled else None
            try:
                assert await asyncio.wait_for(reader.read(), timeout + 25) == b""
            finally:
                if sender is not None:
                    sender.cancel()
            elapsed = time.monotonic() - start
            assert elapsed >= timeout - 1, elapsed
            return elapsed
        finally:
            writer.transport.abort()

    body_head = (b"POST /api/auth/login HTTP/1.1\r\nHost: device\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 1000\r\n\r\n{")

    async def all_three() -> None:
        await asyncio.gather(closed_after(b"", b"", HEAD_TIMEOUT),
                             closed_after(b"GET /api/health HTTP/1.1\r\nHost: device\r\n", b"X-Slow-%d: x\r\n",
                                          HEAD_TIMEOUT),
                             closed_after(body_head, b" ", BODY_TIMEOUT))

    asyncio.run(all_three())


def test_connections_over_the_bound_are_answered_503(shared_device: RunningDevice) -> None:
    extra = 8

    async def hold() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection kept open past the head timeout: its request waits for a body that never comes."""
        reader, writer = await _connect(shared_device)
        writer.write(b"POST /api/auth/login HTTP/1.1\r\nHost: device\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 2\r\n\r\n")
        return reader, writer

    async def flood() -> list[int]:
        held = await asyncio.gather(*(hold() for _ in range(MAX_CONNECTIONS)))
        try:
            answers = await asyncio.gather(*(_sent_whole_and_answered(shared_device, _request())
                                             for _ in range(extra)))
        finally:
            for _, writer in held:
                writer.transport.abort()
        for status, _, body in answers:
            if status == 503:
                assert orjson.loads(body)["error"]["code"] == "unavailable"
        return [status for status, _, _ in answers]

    assert asyncio.run(flood()) == [503] * extra
    assert httpx.get(f"{shared_device.url}/api/health", verify=False, timeout=30).status_code == 200
