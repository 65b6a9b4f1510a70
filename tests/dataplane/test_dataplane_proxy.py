"""The TCP proxy of one virtual server, with real backends on loopback."""

import asyncio
import contextlib
import hashlib
import random
import socket
import time

import pytest
from dataplane_helpers import HOST, Backend, HttpBackend, async_test, body, closed_port, hold, http_get, until

from tandem.dataplane import Balancer, PoolStats, Stats, VirtualServerProxy


async def proxy_for(method: str, members: list[tuple[str, int, bool]], **kwargs) -> VirtualServerProxy:
    stats = Stats(pool=PoolStats())
    balancer = Balancer(method, members, connections=stats.pool.current)
    proxy = VirtualServerProxy("/Common/vs", HOST, 0, balancer, stats, **kwargs)
    await proxy.start()
    assert proxy.listening
    return proxy


def port_of(proxy: VirtualServerProxy) -> int:
    assert proxy.bound is not None
    return proxy.bound[1]


@async_test
async def test_round_robin_across_two_backends() -> None:
    a, b = await HttpBackend("a").start(), await HttpBackend("b").start()
    proxy = await proxy_for("round-robin", [(HOST, a.port, True), (HOST, b.port, True)])
    answers = [body(await http_get(port_of(proxy))) for _ in range(6)]
    assert answers == [b"a", b"b", b"a", b"b", b"a", b"b"]
    assert (a.accepted, b.accepted) == (3, 3)
    await proxy.stop(1)


@async_test
async def test_least_connections_prefers_the_idle_member() -> None:
    x, y = await hold("x"), await hold("y")
    proxy = await proxy_for("least-connections", [(HOST, x.port, True), (HOST, y.port, True)])
    members = {b"x": f"{HOST}:{x.port}", b"y": f"{HOST}:{y.port}"}
    held_reader, held_writer = await asyncio.open_connection(HOST, port_of(proxy))
    busy = (await held_reader.readline()).strip()
    idle = (set(members) - {busy}).pop()
    for _ in range(4):  # round-robin would alternate; least-connections keeps choosing the idle member
        reader, writer = await asyncio.open_connection(HOST, port_of(proxy))
        assert (await reader.readline()).strip() == idle
        writer.close()
        await until(lambda: proxy.stats.pool.current(members[idle]) == 0, what="the short connection to close")
    assert proxy.stats.pool.current(members[busy]) == 1
    held_writer.close()
    await proxy.stop(1)


@async_test
async def test_disabled_member_gets_nothing() -> None:
    a, b = await HttpBackend("a").start(), await HttpBackend("b").start()
    proxy = await proxy_for("round-robin", [(HOST, a.port, True), (HOST, b.port, False)])
    assert [body(await http_get(port_of(proxy))) for _ in range(4)] == [b"a"] * 4
    assert b.accepted == 0
    await proxy.stop(1)


@async_test
async def test_refusing_member_is_skipped() -> None:
    dead = closed_port()
    a = await HttpBackend("a").start()
    proxy = await proxy_for("round-robin", [(HOST, dead, True), (HOST, a.port, True)])
    assert [body(await http_get(port_of(proxy))) for _ in range(4)] == [b"a"] * 4
    snapshot = proxy.stats.snapshot()
    assert snapshot["connections_total"] == 4
    assert snapshot["members"][f"{HOST}:{a.port}"]["connections_total"] == 4
    assert snapshot["members"][f"{HOST}:{dead}"]["connections_total"] == 0
    assert snapshot["members"][f"{HOST}:{dead}"]["connections_current"] == 0
    await proxy.stop(1)


@async_test
async def test_member_that_does_not_answer_in_time_is_skipped() -> None:
    with socket.create_server((HOST, 0), backlog=0) as full:  # never accepts: once its queue is full,
        filler = socket.create_connection(full.getsockname())  # further SYNs are dropped
        a = await HttpBackend("a").start()
        proxy = await proxy_for("round-robin", [(HOST, full.getsockname()[1], True), (HOST, a.port, True)],
                                connect_timeout=0.3)
        started = time.monotonic()
        assert body(await http_get(port_of(proxy))) == b"a"
        assert time.monotonic() - started >= 0.3
        assert proxy.stats.pool.current(f"{HOST}:{full.getsockname()[1]}") == 0
        await proxy.stop(1)
        filler.close()


@async_test
async def test_client_is_closed_when_no_member_answers() -> None:
    proxy = await proxy_for("round-robin", [(HOST, closed_port(), True)])
    reader, writer = await asyncio.open_connection(HOST, port_of(proxy))
    writer.write(b"hello")
    assert await reader.read() == b""
    writer.close()
    await until(lambda: proxy.connections == 0)
    await proxy.stop(1)


@async_test
async def test_counters_are_exact_for_a_known_transfer() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(1000)
        writer.write(b"y" * 5000)
        await writer.drain()

    backend = await Backend(handler).start()
    proxy = await proxy_for("round-robin", [(HOST, backend.port, True)])
    reader, writer = await asyncio.open_connection(HOST, port_of(proxy))
    await until(lambda: proxy.stats.virtual.connections_current == 1)
    writer.write(b"x" * 1000)
    assert await reader.read() == b"y" * 5000
    writer.close()
    await until(lambda: proxy.stats.virtual.connections_current == 0, what="the connection to close")
    expected = {"connections_total": 1, "connections_current": 0, "bytes_in": 1000, "bytes_out": 5000}
    snapshot = proxy.stats.snapshot()
    assert {k: snapshot[k] for k in expected} == expected
    assert snapshot["members"] == {f"{HOST}:{backend.port}": expected}
    await proxy.stop(1)


@async_test
async def test_stop_refuses_new_connections_at_once_and_drains_open_ones() -> None:
    received, go = asyncio.Event(), asyncio.Event()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(4)
        received.set()
        await go.wait()
        writer.write(b"done")
        await writer.drain()

    backend = await Backend(slow).start()
    proxy = await proxy_for("round-robin", [(HOST, backend.port, True)])
    port = port_of(proxy)
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(b"ping")
    await received.wait()

    started = time.monotonic()
    stopping = asyncio.create_task(proxy.stop(drain_timeout=30))
    await asyncio.sleep(0)
    assert not proxy.listening
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(HOST, port)
    await asyncio.sleep(0.1)
    assert not stopping.done()  # still draining the open connection

    go.set()
    assert await reader.read() == b"done"
    writer.close()
    await asyncio.wait_for(stopping, 10)
    assert time.monotonic() - started < 10  # ended with the connection, not at the drain timeout
    assert proxy.connections == 0


@async_test
async def test_stop_aborts_what_is_left_after_the_drain_timeout() -> None:
    backend = await hold("h")
    proxy = await proxy_for("round-robin", [(HOST, backend.port, True)])
    reader, writer = await asyncio.open_connection(HOST, port_of(proxy))
    assert await reader.readline() == b"h\n"
    await proxy.stop(drain_timeout=0.2)
    assert proxy.connections == 0
    with contextlib.suppress(ConnectionResetError):
        assert await reader.read() == b""
    writer.close()


@async_test
async def test_large_transfer_arrives_intact() -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(256 * 1024):
            writer.write(data)
            await writer.drain()
        writer.write_eof()

    size = 20 * 1024 * 1024
    payload = random.Random(7).randbytes(size)
    backend = await Backend(echo).start()
    proxy = await proxy_for("round-robin", [(HOST, backend.port, True)])
    reader, writer = await asyncio.open_connection(HOST, port_of(proxy))

    async def send() -> None:
        view = memoryview(payload)
        for offset in range(0, size, 1024 * 1024):
            writer.write(view[offset:offset + 1024 * 1024])
            await writer.drain()
        writer.write_eof()

    sending = asyncio.create_task(send())
    echoed = await reader.read(-1)
    await sending
    writer.close()
    assert len(echoed) == size
    assert hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()
    await until(lambda: proxy.stats.virtual.connections_current == 0)
    assert (proxy.stats.virtual.bytes_in, proxy.stats.virtual.bytes_out) == (size, size)
    await proxy.stop(1)


@async_test
async def test_flow_control_bounds_what_the_proxy_buffers() -> None:
    loop = asyncio.get_running_loop()
    listener = socket.create_server((HOST, 0))
    listener.setblocking(False)
    proxy = await proxy_for("round-robin", [(HOST, listener.getsockname()[1], True)])
    size, chunk = 32 * 1024 * 1024, random.Random(3).randbytes(1024 * 1024)
    _, writer = await asyncio.open_connection(HOST, port_of(proxy))
    backend, _ = await loop.sock_accept(listener)  # the member reads nothing for now

    async def send() -> None:
        for _ in range(size // len(chunk)):
            writer.write(chunk)
            await writer.drain()
        writer.write_eof()

    sending = asyncio.create_task(send())
    last, stable_since = -1, time.monotonic()
    while time.monotonic() - stable_since < 0.3:  # until the proxy stops forwarding
        await asyncio.sleep(0.05)
        if proxy.stats.virtual.bytes_in != last:
            last, stable_since = proxy.stats.virtual.bytes_in, time.monotonic()
    assert not sending.done()
    assert proxy.stats.virtual.bytes_in < size // 2
    assert proxy.buffered() < 1024 * 1024

    received, digest = 0, hashlib.sha256()
    while data := await loop.sock_recv(backend, 1024 * 1024):
        received += len(data)
        digest.update(data)
    await sending
    assert received == size
    assert digest.digest() == hashlib.sha256(chunk * (size // len(chunk))).digest()
    writer.close()
    backend.close()
    listener.close()
    await proxy.stop(1)


@async_test
async def test_half_close_client_still_gets_the_answer() -> None:
    async def until_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.read()  # everything, up to the client's EOF
        writer.write(b"got %d bytes" % len(request))
        await writer.drain()

    backend = await Backend(until_eof).start()
    proxy = await proxy_for("round-robin", [(HOST, backend.port, True)])
    reader, writer = await asyncio.open_connection(HOST, port_of(proxy))
    writer.write(b"hello")
    await until(lambda: proxy.stats.virtual.bytes_in == 5, what="the backend to be connected")
    writer.write_eof()
    assert await reader.read() == b"got 5 bytes"
    writer.close()
    await until(lambda: proxy.connections == 0)
    await proxy.stop(1)


@async_test
async def test_update_switches_new_connections_to_the_new_balancer() -> None:
    a, b = await HttpBackend("a").start(), await HttpBackend("b").start()
    proxy = await proxy_for("round-robin", [(HOST, a.port, True)])
    assert body(await http_get(port_of(proxy))) == b"a"
    proxy.update(Balancer("round-robin", [(HOST, b.port, True)]))
    assert body(await http_get(port_of(proxy))) == b"b"
    await proxy.stop(1)


@async_test
async def test_half_close_by_the_backend_keeps_the_other_direction() -> None:
    got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def banner_then_listen(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"banner")
        writer.write_eof()
        got.set_result(await reader.read())

    backend = await Backend(banner_then_listen).start()
    proxy = await proxy_for("round-robin", [(HOST, backend.port, True)])
    reader, writer = await asyncio.open_connection(HOST, port_of(proxy))
    assert await reader.read() == b"banner"
    writer.write(b"still talking")
    writer.write_eof()
    assert await asyncio.wait_for(got, 10) == b"still talking"
    writer.close()
    await until(lambda: proxy.connections == 0)
    await proxy.stop(1)
