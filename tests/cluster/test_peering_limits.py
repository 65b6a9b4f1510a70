"""The intercluster listener bounds what a stranger holds before it authenticates (docs/peering.md,
Security): the size of a frame, the connections at once, and the time to pair or open a session."""

import asyncio
import base64
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from spake2 import SPAKE2_A

from devices import RunningDevice, free_port
from tandem.peering.pake import ID_INITIATOR, ID_RESPONDER
from tandem.peering.server import AUTH_TIMEOUT, MAX_UNAUTHENTICATED
from tandem.peering.wire import TIMEOUT

ANNOUNCED, SENT = 60 << 20, 16 << 20
"""Each attacking connection announces a 60 MiB frame and sends 16 MiB of it: read, four grow the daemon by 64 MiB."""
GROWTH_ALLOWED = 24 << 20


@pytest.fixture(scope="module")
def listener(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningDevice, int]]:
    """A device listening for peer clusters, and its intercluster port."""
    port = free_port()
    device = RunningDevice(name="site", data_dir=tmp_path_factory.mktemp("site") / "site",
                           extra_args=["--intercluster-listen", f"127.0.0.1:{port}"]).start()
    yield device, port
    device.stop()


def _frame(message: dict[str, Any]) -> bytes:
    data = orjson.dumps(message)
    return struct.pack(">I", len(data)) + data


async def _next_frame(reader: asyncio.StreamReader, timeout: float) -> dict[str, Any] | None:
    """The next frame the listener sends, or None when it closed the connection."""
    try:
        (length,) = struct.unpack(">I", await asyncio.wait_for(reader.readexactly(4), timeout))
        return orjson.loads(await asyncio.wait_for(reader.readexactly(length), timeout))
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


def _memory_kib(pid: int, field: str) -> int:
    return int(Path(f"/proc/{pid}/status").read_text().split(f"{field}:")[1].split()[0])


def test_a_large_frame_before_authentication_is_not_read(listener: tuple[RunningDevice, int]) -> None:
    device, port = listener
    pid = device.process.pid
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM (the peak) starts again from the present RSS
    before = _memory_kib(pid, "VmRSS")

    async def announce() -> dict[str, Any] | None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(struct.pack(">I", ANNOUNCED) + b"x" * SENT)
            return await _next_frame(reader, 60)
        finally:
            writer.transport.abort()

    async def attack() -> list[dict[str, Any] | None]:
        return await asyncio.gather(*(announce() for _ in range(4)))

    assert asyncio.run(attack()) == [None] * 4
    peak = _memory_kib(pid, "VmHWM")
    assert (peak - before) * 1024 < GROWTH_ALLOWED, f"the daemon grew from {before} to {peak} KiB"


def test_unauthenticated_connections_over_the_bound_are_refused_busy(listener: tuple[RunningDevice, int]) -> None:
    _, port = listener
    extra = 8

    async def flood() -> list[dict[str, Any] | None]:
        connections = await asyncio.gather(*(asyncio.open_connection("127.0.0.1", port)
                                             for _ in range(MAX_UNAUTHENTICATED + extra)))
        try:
            return await asyncio.gather(*(_first_or_silence(reader) for reader, _ in connections))
        finally:
            for _, writer in connections:
                writer.transport.abort()

    async def _first_or_silence(reader: asyncio.StreamReader) -> dict[str, Any] | None:
        try:
            return await _next_frame(reader, TIMEOUT - 1)
        except TimeoutError:
            return None

    busy = [frame for frame in asyncio.run(flood()) if frame is not None]
    assert len(busy) >= extra, busy
    assert all(frame["type"] == "error" and frame["code"] == "busy" for frame in busy), busy


def test_pairing_must_finish_within_the_authentication_time(listener: tuple[RunningDevice, int]) -> None:
    """Frames each in time (under `wire.TIMEOUT` apart) do not stretch a conversation past `AUTH_TIMEOUT`."""
    gap = TIMEOUT - 1
    assert 3 * gap > AUTH_TIMEOUT, "the listener must close before the SPAKE2 frame begins"
    device, port = listener
    with httpx.Client(base_url=device.url, verify=False, timeout=30) as api:
        token = api.post("/api/auth/login", json={"username": "admin", "password": device.admin_password})
        api.headers["Authorization"] = f"Bearer {token.json()['token']}"
        offer = api.post("/api/cluster/peers", json={"authentication": {"generate_passphrase": True}})
        assert offer.status_code == 201, offer.text
    hello = _frame({"type": "pair", "encryption": "none",
                    "cluster": {"uuid": "stranger", "name": "stranger", "addresses": []}})
    pake = _frame({"type": "pake", "message": base64.b64encode(
        SPAKE2_A(b"a guess", idA=ID_INITIATOR, idB=ID_RESPONDER).start()).decode()})

    async def converse() -> list[dict[str, Any] | None]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for frame in (hello, pake):  # the header, then the rest, each `gap` seconds after the last
                for part in (frame[:4], frame[4:]):
                    await asyncio.sleep(gap)
                    writer.write(part)
            frames = [await _next_frame(reader, 30)]
            while frames[-1] is not None:
                frames.append(await _next_frame(reader, 30))
            return frames
        finally:
            writer.transport.abort()

    frames = asyncio.run(converse())
    assert [frame["type"] for frame in frames[:-1]] in ([], ["pair-offers"]), frames  # no answer to the SPAKE2 frame
