"""Pool member states, full health checks and TLS to members with a real haproxy (one for the module)."""

import asyncio
import shutil
import socket
import ssl
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from dataplane_helpers import Backend, HttpBackend, hold

from pki import TestCA
from tandem.dataplane import haproxy_runtime
from tandem.dataplane.engine import ServedMember, ServedPool, ServedTls, ServedVirtual
from tandem.dataplane.haproxy_engine import HaproxyEngine
from tandem.dataplane.monitor import MonitorConfig

pytestmark = pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed")

HOST = "127.0.0.1"
Run = Callable[[Coroutine[Any, Any, Any]], Any]


@pytest.fixture(scope="module")
def hx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Run, HaproxyEngine]]:
    """One HAProxy engine for the module, on one event loop; each test applies what it serves."""
    runner = asyncio.Runner()
    engine = HaproxyEngine(Path(tmp_path_factory.mktemp("hxpool")) / "run")

    def run(scenario: Coroutine[Any, Any, Any]) -> Any:
        async def bounded() -> Any:
            async with asyncio.timeout(60):
                return await scenario

        return runner.run(bounded())

    try:
        yield run, engine
    finally:
        runner.run(engine.stop_all(0))
        runner.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


async def apply(engine: HaproxyEngine, virtuals: list[ServedVirtual]) -> None:
    """`engine.apply`, again after `retry_after` as the data plane does (HAProxy's master CLI may refuse a
    reload that follows another closely)."""
    await engine.apply(virtuals)
    while (delay := engine.retry_after()) is not None:
        await asyncio.sleep(delay)
        await engine.apply(virtuals)


def members(*states: tuple[Backend, str]) -> tuple[ServedMember, ...]:
    return tuple(ServedMember(HOST, backend.port, state) for backend, state in states)


async def rows(engine: HaproxyEngine) -> dict[str, dict[str, str]]:
    """`show stat` server rows by member key."""
    await engine.refresh_stats()
    by_server = {server: key for (_, key), server in engine._served.rendering.servers.items()}  # type: ignore[union-attr]
    stat = haproxy_runtime.stat_rows(await haproxy_runtime.show_stat_text(engine.process.stats_socket))
    return {by_server[row["svname"]]: row for row in stat if row["svname"] in by_server}


async def member_health(engine: HaproxyEngine, pool: str, backend: Backend) -> str:
    await engine.refresh_stats()
    return engine.stats()["pools"][pool][f"{HOST}:{backend.port}"]["health"]


async def wait_health(engine: HaproxyEngine, pool: str, backend: Backend, health: str, timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while await member_health(engine, pool, backend) != health:
            await asyncio.sleep(0.02)


async def first_line(port: int) -> tuple[bytes, asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(HOST, port)
    return await reader.readline(), reader, writer


async def who(port: int) -> bytes:
    """The first line a new connection gets (it is closed then)."""
    line, _, writer = await first_line(port)
    writer.close()
    return line


async def http_status(port: int) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")
    answer = await reader.read()
    writer.close()
    head, _, content = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), content


def test_drain_keeps_an_open_connection_and_disabled_gets_none(hx: tuple[Run, HaproxyEngine]) -> None:
    run, engine = hx

    async def scenario() -> None:
        a, b = await hold("A"), await hold("B")
        port = free_port()

        def virtual(*states: str, name: str = "st") -> ServedVirtual:
            return ServedVirtual("Common", name, HOST, port if name == "st" else free_port(),
                                 ServedPool("Common", "st", members=members((a, states[0]), (b, states[1]))))

        await apply(engine, [virtual("enabled", "disabled")])
        assert engine.errors == {}
        line, held, writer = await first_line(port)
        assert line == b"A\n"
        for _ in range(3):  # disabled: none
            assert await who(port) == b"A\n"
        assert b.accepted == 0
        assert (await rows(engine))[f"{HOST}:{b.port}"]["status"] == "MAINT"

        pid = await haproxy_runtime.worker_pid(engine.process.stats_socket)
        await apply(engine, [virtual("drain", "enabled")])
        assert await haproxy_runtime.worker_pid(engine.process.stats_socket) == pid  # no reload
        for _ in range(3):
            assert await who(port) == b"B\n"
        row = (await rows(engine))[f"{HOST}:{a.port}"]
        assert (row["status"], row["weight"]) == ("DRAIN", "1")  # a state: its weight is kept
        shown = engine.stats()["pools"]["/Common/st"][f"{HOST}:{a.port}"]
        assert (shown["state"], shown["enabled"], shown["weight"]) == ("drain", True, 1)
        writer.write(b"still here\n")
        await writer.drain()
        await asyncio.sleep(0.2)
        assert not held.at_eof() and a.accepted == 4  # the drained member's connection is still open

        # a reload (another virtual server) writes the draining server with weight 0, then sets it to drain
        await apply(engine, [virtual("drain", "enabled"), virtual("drain", "enabled", name="other")])
        assert await haproxy_runtime.worker_pid(engine.process.stats_socket) != pid
        assert (await rows(engine))[f"{HOST}:{a.port}"]["status"] == "DRAIN"
        assert await who(port) == b"B\n"

        await apply(engine, [virtual("enabled", "enabled")])  # back (no monitor: "no check")
        assert (await rows(engine))[f"{HOST}:{a.port}"]["status"] == "no check"
        assert {await who(port) for _ in range(4)} == {b"A\n", b"B\n"}
        writer.close()
        a.close()
        b.close()

    run(scenario())


def test_http_check_with_method_host_rise_and_fall(hx: tuple[Run, HaproxyEngine]) -> None:
    run, engine = hx

    async def scenario() -> None:
        backend = await HttpBackend("A").start()
        monitor = MonitorConfig("http", interval=0.1, timeout=1, path="/health", expected_status=200, rise=3, fall=2,
                                method="OPTIONS", host="health.example")
        pool = ServedPool("Common", "chk", members=members((backend, "enabled")), monitor=monitor)
        await apply(engine, [ServedVirtual("Common", "chk", HOST, free_port(), pool, protocol="http")])
        await wait_health(engine, "/Common/chk", backend, "up")
        head = backend.requests[-1].decode().lower()
        assert head.startswith("options /health http/1.1\r\n") and "\r\nhost: health.example\r\n" in head
        row = (await rows(engine))[f"{HOST}:{backend.port}"]
        assert (row["check_rise"], row["check_fall"]) == ("3", "2")

        backend.status = 500
        seen = len(backend.requests)
        await wait_health(engine, "/Common/chk", backend, "down")
        assert len(backend.requests) - seen >= 2  # fall 2: not after the first failed check
        backend.status = 200
        seen = len(backend.requests)
        await wait_health(engine, "/Common/chk", backend, "up")
        assert len(backend.requests) - seen >= 3  # rise 3
        backend.close()

    run(scenario())


def test_a_tls_check_on_a_member_in_the_clear_fails(hx: tuple[Run, HaproxyEngine]) -> None:
    run, engine = hx

    async def scenario() -> None:
        backend = await HttpBackend("A").start()
        for tls, health in ((False, "up"), (True, "down")):
            monitor = MonitorConfig("tcp", interval=0.1, timeout=1, tls=tls)
            pool = ServedPool("Common", "tc", members=members((backend, "enabled")), monitor=monitor)
            await apply(engine, [ServedVirtual("Common", "tc", HOST, free_port(), pool)])
            await wait_health(engine, "/Common/tc", backend, health)
        backend.close()

    run(scenario())


async def tls_backend(ca: TestCA, name: str, directory: Path,
                      names: list[str | None]) -> tuple[HttpBackend, asyncio.Server]:
    """An HTTP backend over TLS with a certificate `ca` issued for `member.example` (its files in `directory`);
    the SNI of each handshake goes to `names`."""
    issued = ca.issue("member.example", "member.example")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.sni_callback = lambda _socket, server_name, _context: names.append(server_name)
    chain, key = directory / f"{name}.chain.pem", directory / f"{name}.key.pem"
    chain.write_text(issued.chain)
    key.write_text(issued.key)
    context.load_cert_chain(chain, key)
    backend = HttpBackend(name)
    server = await asyncio.start_server(backend._handle, HOST, 0, ssl=context)
    backend.port = server.sockets[0].getsockname()[1]
    return backend, server


def test_tls_to_members_verified_against_a_ca(hx: tuple[Run, HaproxyEngine], tmp_path: Path) -> None:
    run, engine = hx

    async def scenario() -> None:
        ca, other = TestCA(), TestCA("Another CA")
        names: list[str | None] = []
        backend, server = await tls_backend(ca, "T", tmp_path, names)
        port = free_port()
        monitor = MonitorConfig("tcp", interval=0.1, timeout=1)

        def virtual(tls: ServedTls | None) -> ServedVirtual:
            pool = ServedPool("Common", "tls", members=members((backend, "enabled")), monitor=monitor, tls=tls)
            return ServedVirtual("Common", "tls", HOST, port, pool, protocol="http")

        await apply(engine, [virtual(ServedTls(True, ca.pem, "/Common/ca"))])
        assert engine.errors == {}
        await wait_health(engine, "/Common/tls", backend, "up")
        assert await http_status(port) == (200, b"T")
        files = sorted((engine.process.runtime_dir / "certs").iterdir())
        assert [f.read_text() for f in files] == [ca.pem.strip() + "\n"]

        await apply(engine, [virtual(ServedTls(True, ca.pem, "/Common/ca", "other.example"))])  # not its name
        await wait_health(engine, "/Common/tls", backend, "down")
        await apply(engine, [virtual(ServedTls(True, ca.pem, "/Common/ca", "member.example"))])  # its name
        await wait_health(engine, "/Common/tls", backend, "up")
        names.clear()
        assert await http_status(port) == (200, b"T")
        assert "member.example" in names

        await apply(engine, [virtual(ServedTls(True, other.pem, "/Common/other"))])  # the wrong CA
        await wait_health(engine, "/Common/tls", backend, "down")
        assert (await http_status(port))[0] == 503

        await apply(engine, [virtual(ServedTls(False))])  # not verified
        await wait_health(engine, "/Common/tls", backend, "up")
        assert await http_status(port) == (200, b"T")

        await apply(engine, [virtual(ServedTls(True, None, "/Common/gone"))])  # its CA bundle is missing
        assert "CA bundle /Common/gone does not exist" in engine.errors["/Common/tls"]
        server.close()

    run(scenario())
