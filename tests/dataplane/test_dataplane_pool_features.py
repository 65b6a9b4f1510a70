"""The builtin engine's pool features: member states (drain, disabled), health monitors with rise/fall,
method, Host and TLS, and pools over TLS (not served by it, with why)."""

import asyncio
import ssl
import tempfile
from pathlib import Path

from dataplane_helpers import HOST, Backend, HttpBackend, async_test, hold, until

from pki import TestCA
from tandem.dataplane import MonitorConfig, PoolMonitor
from tandem.dataplane.catalog import served_from_objects
from tandem.dataplane.engine import (
    NOT_TLS,
    BuiltinEngine,
    ServedMember,
    ServedPool,
    ServedTls,
    ServedVirtual,
)


async def who(port: int) -> bytes:
    """The first line a new connection through the engine gets (closed then)."""
    reader, writer = await asyncio.open_connection(HOST, port)
    line = await reader.readline()
    writer.close()
    return line


def virtual(port: int, *members: tuple[Backend, str], tls: ServedTls | None = None) -> ServedVirtual:
    pool = ServedPool("Common", "p", members=tuple(ServedMember(HOST, b.port, state) for b, state in members), tls=tls)
    return ServedVirtual("Common", "v", HOST, port, pool)


@async_test
async def test_drain_keeps_open_connections_and_disabled_gets_none() -> None:
    a, b = await hold("A"), await hold("B")
    engine = BuiltinEngine()
    probe = await asyncio.start_server(lambda r, w: None, HOST, 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    try:
        await engine.apply([virtual(port, (a, "enabled"), (b, "disabled"))])
        reader, writer = await asyncio.open_connection(HOST, port)
        assert await reader.readline() == b"A\n"
        assert [await who(port) for _ in range(3)] == [b"A\n"] * 3 and b.accepted == 0

        await engine.apply([virtual(port, (a, "drain"), (b, "enabled"))])
        assert [await who(port) for _ in range(3)] == [b"B\n"] * 3
        writer.write(b"still here\n")
        await writer.drain()
        await asyncio.sleep(0.1)
        assert not reader.at_eof() and a.accepted == 4  # the open connection goes on
        members = engine.stats()["pools"]["/Common/p"]
        assert {key: (m["state"], m["enabled"]) for key, m in members.items()} == {
            f"{HOST}:{a.port}": ("drain", True), f"{HOST}:{b.port}": ("enabled", True)}
        assert members[f"{HOST}:{a.port}"]["connections_current"] == 1

        await engine.apply([virtual(port, (a, "disabled"), (b, "drain"))])
        reader_none, writer_none = await asyncio.open_connection(HOST, port)
        assert await reader_none.read() == b""  # no member takes new connections: closed
        writer_none.close()
        writer.close()
    finally:
        await engine.stop_all(0)
        a.close()
        b.close()


@async_test
async def test_http_monitor_method_host_rise_and_fall() -> None:
    backend = await HttpBackend("a").start()
    key = f"{HOST}:{backend.port}"
    config = MonitorConfig("http", interval=0.03, timeout=2.0, path="/health", rise=3, fall=2, method="OPTIONS",
                           host="health.example")
    monitor = PoolMonitor("/Common/web", config, [(HOST, backend.port)])
    monitor.start()
    await until(lambda: monitor.state(key) == "up", what="up")  # unchecked: one success is enough
    request = backend.requests[0].decode()
    assert request.startswith("OPTIONS /health HTTP/1.0\r\n") and "\r\nHost: health.example\r\n" in request

    backend.status = 500
    seen = len(backend.requests)
    await until(lambda: monitor.state(key) == "down", what="down")
    assert len(backend.requests) - seen >= 2  # fall 2
    backend.status = 200
    seen = len(backend.requests)
    await until(lambda: monitor.state(key) == "up", what="up again")
    assert len(backend.requests) - seen >= 3  # rise 3
    await monitor.stop()
    backend.close()


@async_test
async def test_tls_monitors_speak_tls_without_verifying() -> None:
    ca = TestCA()
    issued = ca.issue("member.example", "member.example")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as directory:  # load_cert_chain reads files
        chain, key_file = Path(directory) / "chain.pem", Path(directory) / "key.pem"
        chain.write_text(issued.chain)
        key_file.write_text(issued.key)
        context.load_cert_chain(chain, key_file)
    secure = HttpBackend("s")
    server = await asyncio.start_server(secure._handle, HOST, 0, ssl=context)
    secure_port = server.sockets[0].getsockname()[1]
    plain = await HttpBackend("p").start()
    cases = [(MonitorConfig("http", interval=0.03, timeout=0.3, tls=True), {secure_port: "up", plain.port: "down"}),
             (MonitorConfig("tcp", interval=0.03, timeout=0.3, tls=True), {secure_port: "up", plain.port: "down"}),
             (MonitorConfig("http", interval=0.03, timeout=0.3), {secure_port: "down", plain.port: "up"})]
    for config, wanted in cases:
        monitor = PoolMonitor("/Common/t", config, [(HOST, secure_port), (HOST, plain.port)])
        monitor.start()
        expected = {f"{HOST}:{port}": state for port, state in wanted.items()}
        await until(lambda m=monitor, e=expected: m.states() == e, what=f"{config}")
        await monitor.stop()
    assert any(r.startswith(b"GET / HTTP/1.0\r\n") for r in secure.requests)
    server.close()
    plain.close()


@async_test
async def test_a_pool_over_tls_is_not_served_by_the_builtin_engine() -> None:
    backend = await HttpBackend("a").start()
    engine = BuiltinEngine()
    try:
        await engine.apply([virtual(0, (backend, "enabled"), tls=ServedTls(False))])
        assert engine.errors == {"/Common/v": NOT_TLS}
        assert engine.retry_after() is None  # lasting: no retry
        assert engine.stats()["virtuals"]["/Common/v"]["error"] == NOT_TLS
        await engine.apply([virtual(0, (backend, "enabled"))])
        assert engine.errors == {}
    finally:
        await engine.stop_all(0)
        backend.close()


def test_objects_carry_states_the_former_enabled_and_tls() -> None:
    pools = [{"partition": "A", "name": "p", "tls": {"verify": True, "ca": "bundle"}, "monitor": "m",
              "members": [{"address": "10.0.0.1", "port": 80, "enabled": False},  # stored before `state`
                          {"address": "10.0.0.2", "port": 80, "state": "drain", "enabled": True}]}]
    monitors = [{"partition": "A", "name": "m", "type": "http", "rise": 2, "fall": 4, "method": "HEAD",
                 "host": "h.example", "tls": True}]
    certificates = [{"partition": "A", "name": "bundle", "certificate": "PEM", "key": None}]
    virtuals = [{"partition": "A", "name": "v", "address": "192.0.2.1", "port": 80, "pool": "p"}]
    (served,) = served_from_objects(virtuals, pools, monitors, certificates)
    pool = served.pool
    assert pool is not None
    assert [(m.state, m.enabled) for m in pool.members] == [("disabled", False), ("drain", True)]
    assert pool.tls == ServedTls(True, "PEM", "/A/bundle")
    assert pool.monitor is not None
    assert (pool.monitor.rise, pool.monitor.fall, pool.monitor.method, pool.monitor.host, pool.monitor.tls) == (
        2, 4, "HEAD", "h.example", True)
