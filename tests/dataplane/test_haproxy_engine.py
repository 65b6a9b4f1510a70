"""The HAProxy engine with a real haproxy and real backends on loopback, driven in-process."""

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from dataplane_helpers import Backend, HttpBackend, hold, until

from pki import TestCA
from tandem import ipc
from tandem.dataplane import haproxy_runtime, haproxy_shards
from tandem.dataplane.catalog import served_from_objects
from tandem.dataplane.engine import (
    BuiltinEngine,
    ServedCertificate,
    ServedMember,
    ServedPool,
    ServedRule,
    ServedVirtual,
)
from tandem.dataplane.haproxy_config import identifier, quote, render
from tandem.dataplane.haproxy_engine import HaproxyEngine
from tandem.dataplane.haproxy_shards import HaproxyShards, shard_of
from tandem.dataplane.monitor import MonitorConfig

pytestmark = pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed")

HOST = "127.0.0.1"
TRICKY = "a'b \"c\" #d %e \\f $HOME ${X}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def run(test: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(60):
            return await test(*args)

    return asyncio.run(bounded())


async def request(port: int, path: str = "/", headers: dict[str, str] | None = None,
                  method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.0 request; status, headers (lower-case names) and body."""
    reader, writer = await asyncio.open_connection(HOST, port)
    lines = [f"{method} {path} HTTP/1.0", *(f"{k}: {v}" for k, v in (headers or {"Host": "test"}).items())]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    answer = await reader.read()
    writer.close()
    head, _, content = answer.partition(b"\r\n\r\n")
    status_line, *fields = head.decode().split("\r\n")
    return int(status_line.split()[1]), {k.lower(): v.strip() for k, _, v in (f.partition(":") for f in fields)}, \
        content


async def new_worker(engine: HaproxyEngine, old: int | None) -> int:
    """The worker answering on the stats socket once it is not `old`: after a reload the old worker, stopping, may
    still take a connection to the socket for a moment (fails if no other worker answers within 2 s)."""
    for _ in range(200):
        pid = await haproxy_runtime.worker_pid(engine.process.stats_socket)
        if pid not in (None, old):
            return pid
        await asyncio.sleep(0.01)
    raise AssertionError(f"no worker but {old} answers: no reload")


def pool(name: str, *backends: HttpBackend | Any, **options: Any) -> ServedPool:
    weights = options.pop("weights", None) or [1] * len(backends)
    return ServedPool("Common", name, members=tuple(ServedMember(HOST, b.port, weight=w)
                                                    for b, w in zip(backends, weights, strict=True)), **options)


@pytest.fixture
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A runtime directory whose path holds a space and a quote (a data directory the operator chose)."""
    return Path(tmp_path_factory.mktemp("hx")) / "run dir's"


def test_tcp_forwarding_weights_and_runtime_changes(runtime: Path) -> None:
    async def scenario() -> None:
        a, b = await HttpBackend("A").start(), await HttpBackend("B").start()
        port = free_port()
        engine = HaproxyEngine(runtime)
        try:
            virtual = ServedVirtual("Common", "tcp", HOST, port, pool("p", a, b, weights=[1, 0]))
            elsewhere = ServedVirtual("Common", "far", "192.0.2.10", port, pool("q", a))  # not on this host (yet)
            await engine.apply([virtual, elsewhere])
            assert engine.errors == {}
            assert {(await request(port))[2] for _ in range(6)} == {b"A"}  # weight 0 gets nothing
            pid = await haproxy_runtime.worker_pid(engine.process.stats_socket)
            await engine.apply([ServedVirtual("Common", "tcp", HOST, port, pool("p", a, b, weights=[1, 3])),
                                elsewhere])
            answers = [(await request(port))[2] for _ in range(8)]
            assert answers.count(b"B") == 6 and answers.count(b"A") == 2
            assert await haproxy_runtime.worker_pid(engine.process.stats_socket) == pid  # no reload
            await engine.refresh_stats()
            stats = engine.stats()
            assert stats["virtuals"]["/Common/tcp"]["connections_total"] >= 14
            assert stats["pools"]["/Common/p"][f"{HOST}:{b.port}"]["health"] == "up"
            assert os.stat(runtime).st_mode & 0o777 == 0o700
            for name in ("haproxy.sock", "master.sock"):
                assert os.stat(runtime / name).st_mode & 0o777 == 0o600
        finally:
            await engine.stop_all(0)
            a.close()
            b.close()
        assert engine.process.running is False

    run(scenario)


def test_a_member_added_or_removed_goes_through_the_runtime_api_and_a_keep_alive_client_loses_nothing(
        runtime: Path) -> None:
    async def keep_alive_get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> tuple[int, bytes]:
        writer.write(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        length = next(int(line.split(":")[1]) for line in head.split("\r\n")
                      if line.lower().startswith("content-length"))
        return int(head.split()[1]), await reader.readexactly(length)

    async def scenario() -> None:
        a, b = await HttpBackend("A").start(), await HttpBackend("B").start()
        port = free_port()
        engine = HaproxyEngine(runtime)
        monitored = {"monitor": MonitorConfig(type="tcp", interval=0.2, timeout=0.5)}
        try:
            await engine.apply([ServedVirtual("Common", "web", HOST, port, pool("p", a, **monitored),
                                              protocol="http")])
            reader, writer = await asyncio.open_connection(HOST, port)
            assert await keep_alive_get(reader, writer) == (200, b"A")
            checked = (runtime / "candidate.cfg").read_text()
            pid = await haproxy_runtime.worker_pid(engine.process.stats_socket)
            both = [ServedVirtual("Common", "web", HOST, port, pool("p", a, b, **monitored), protocol="http")]
            await engine.apply(both)
            assert engine.errors == {}
            assert await haproxy_runtime.worker_pid(engine.process.stats_socket) == pid  # no reload
            assert (runtime / "candidate.cfg").read_text() == checked  # no `haproxy -c`
            assert (await keep_alive_get(reader, writer)) == (200, b"A")  # the same connection, the same worker
            writer.close()
            assert {(await request(port))[2] for _ in range(6)} == {b"A", b"B"}
            async def health() -> str:
                await engine.refresh_stats()
                return engine.stats()["pools"]["/Common/p"][f"{HOST}:{b.port}"]["health"]

            for _ in range(50):
                if await health() == "up":
                    break
                await asyncio.sleep(0.1)
            assert await health() == "up"
            assert f"{HOST}:{b.port}" in (runtime / "haproxy.cfg").read_text()  # what a restart serves
            await engine.apply([ServedVirtual("Common", "web", HOST, port, pool("p", b, **monitored),
                                              protocol="http")])
            assert engine.errors == {}
            assert {(await request(port))[2] for _ in range(4)} == {b"B"}
            assert set(engine.stats()["pools"]["/Common/p"]) == {f"{HOST}:{b.port}"}
        finally:
            await engine.stop_all(0)

    run(scenario)


def test_a_removed_member_with_open_connections_reloads_and_the_old_worker_keeps_them(runtime: Path) -> None:
    async def scenario() -> None:
        a, b = await hold("A"), await hold("B")
        port = free_port()
        engine = HaproxyEngine(runtime)
        try:
            await engine.apply([ServedVirtual("Common", "t", HOST, port, pool("p", a))])
            reader, writer = await asyncio.open_connection(HOST, port)
            assert await reader.readline() == b"A\n"
            pid = await haproxy_runtime.worker_pid(engine.process.stats_socket)
            await engine.apply([ServedVirtual("Common", "t", HOST, port, pool("p", b))])
            assert engine.errors == {}
            await new_worker(engine, pid)  # HAProxy refused `del server`: a reload
            other_reader, other = await asyncio.open_connection(HOST, port)
            assert await other_reader.readline() == b"B\n"
            other.close()
            await asyncio.sleep(0.2)
            assert not reader.at_eof()  # the old worker still carries it
            writer.close()
        finally:
            await engine.stop_all(0)

    run(scenario)


def test_drain_keeps_open_connections_and_sends_new_ones_elsewhere(runtime: Path) -> None:
    async def scenario() -> None:
        a, b = await hold("A"), await hold("B")
        port = free_port()
        engine = HaproxyEngine(runtime)
        try:
            await engine.apply([ServedVirtual("Common", "d", HOST, port, pool("p", a, b, weights=[1, 0]))])
            reader, writer = await asyncio.open_connection(HOST, port)
            assert await reader.readline() == b"A\n"
            await engine.apply([ServedVirtual("Common", "d", HOST, port, pool("p", a, b, weights=[0, 1]))])
            for _ in range(3):
                other_reader, other = await asyncio.open_connection(HOST, port)
                assert await other_reader.readline() == b"B\n"
                other.close()
            await asyncio.sleep(0.3)
            assert not reader.at_eof() and a.accepted == 1  # the drained member's connection is still open
            writer.close()
        finally:
            await engine.stop_all(0)

    run(scenario)


@contextlib.asynccontextmanager
async def serving_rules(runtime: Path, rules_of: Callable[[HttpBackend, HttpBackend], tuple[ServedRule, ...]]
                        ) -> AsyncIterator[tuple[HaproxyEngine, int, HttpBackend]]:
    """An http virtual server with default pool A (backend given) and the rules `rules_of(B, C)` makes."""
    a, b, c = [await HttpBackend(n).start() for n in "ABC"]
    port = free_port()
    engine = HaproxyEngine(runtime)
    try:
        await engine.apply([ServedVirtual("Common", "web", HOST, port, pool("pa", a), protocol="http",
                                          rules=rules_of(b, c))])
        assert engine.errors == {}
        yield engine, port, a
    finally:
        await engine.stop_all(0)


def test_http_rules_route_redirect_respond_reject(runtime: Path) -> None:
    def rules_of(b: HttpBackend, c: HttpBackend) -> tuple[ServedRule, ...]:
        return (
            ServedRule("api", host="api.example.com", path="/v1", pool=pool("pb", b)),
            ServedRule("wild", host="*.img.example.com", pool=pool("pc", c)),
            ServedRule("moved", path="/old", path_type="exact", action="redirect", location="https://new.example/x",
                       status=301),
            ServedRule("teapot", path="^/t[0-9]+$", path_type="regex", methods=("POST",), action="respond",
                       status=418),
            ServedRule("deny", path="/admin", action="reject"),
            ServedRule("shadow", path="/admin", pool=pool("pb", b)),  # never reached: the first match wins
        )

    async def scenario() -> None:
        async with serving_rules(runtime, rules_of) as (engine, port, a):
            assert (await request(port, "/v1/x", {"Host": "API.example.com:80"}))[2] == b"B"
            assert (await request(port, "/v2", {"Host": "api.example.com"}))[2] == b"A"
            assert (await request(port, "/", {"Host": "x.img.example.com"}))[2] == b"C"
            assert (await request(port, "/", {"Host": "img.example.com"}))[2] == b"A"
            status, headers, _ = await request(port, "/old")
            assert (status, headers["location"]) == (301, "https://new.example/x")
            assert (await request(port, "/old/more"))[2] == b"A"
            assert (await request(port, "/t42", method="POST"))[0] == 418
            assert (await request(port, "/t42"))[2] == b"A"
            assert (await request(port, "/admin/users"))[0] == 403
            seen = a.requests[-1].decode().lower()
            assert "x-forwarded-for: 127.0.0.1" in seen and 'forwarded: for="127.0.0.1";proto=http' in seen
            await engine.refresh_stats()
            assert engine.stats()["virtuals"]["/Common/web"]["requests"] >= 9

    run(scenario)


def test_http_rules_that_all_forward_take_the_first_match(runtime: Path) -> None:
    """Rules that only forward are written as use_backend lines (the faster form): their order still holds."""
    def rules_of(b: HttpBackend, c: HttpBackend) -> tuple[ServedRule, ...]:
        return (
            ServedRule("api", host="api.example.com", path="/v1", pool=pool("pb", b)),
            ServedRule("wild", host="*.img.example.com", pool=pool("pc", c)),
            ServedRule("shadow", host="api.example.com", pool=pool("pc", c)),  # /v1 never reaches it
            ServedRule("any", path="/any", pool=pool("pb", b)),
        )

    async def scenario() -> None:
        async with serving_rules(runtime, rules_of) as (_, port, _):
            assert "tandem_rule" not in (runtime / "haproxy.cfg").read_text()
            assert (await request(port, "/v1/x", {"Host": "API.example.com:80"}))[2] == b"B"
            assert (await request(port, "/v2", {"Host": "api.example.com"}))[2] == b"C"
            assert (await request(port, "/", {"Host": "x.IMG.example.com"}))[2] == b"C"
            assert (await request(port, "/any/thing", {"Host": "elsewhere"}))[2] == b"B"
            assert (await request(port, "/", {"Host": "img.example.com"}))[2] == b"A"

    run(scenario)


def test_monitors_become_checks_and_proxy_protocol_reaches_members(runtime: Path) -> None:
    signatures: list[bytes] = []

    async def first_bytes(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        signatures.append(await reader.readexactly(12))

    async def scenario() -> None:
        good, failing = await HttpBackend("G").start(), await HttpBackend("F", status=500).start()
        proxied = await Backend(first_bytes).start()
        port, proxy_port, empty_port = free_port(), free_port(), free_port()
        engine = HaproxyEngine(runtime)
        monitor = MonitorConfig("http", interval=0.1, timeout=1.0, path="/health", expected_status=200)
        try:
            await engine.apply([
                ServedVirtual("Common", "m", HOST, port, pool("p", good, failing, monitor=monitor)),
                ServedVirtual("Common", "pp", HOST, proxy_port, pool("q", proxied), proxy_protocol=True),
                ServedVirtual("Common", "empty", HOST, empty_port)])
            assert engine.errors == {}

            async def health() -> dict[str, str]:
                await engine.refresh_stats()
                return {key: member["health"] for key, member in engine.stats()["pools"]["/Common/p"].items()}

            deadline = time.monotonic() + 10
            while await health() != {f"{HOST}:{good.port}": "up", f"{HOST}:{failing.port}": "down"}:
                assert time.monotonic() < deadline, await health()
                await asyncio.sleep(0.05)
            assert {(await request(port))[2] for _ in range(4)} == {b"G"}
            assert good.requests[0].startswith(b"GET /health HTTP/1.0")
            _, writer = await asyncio.open_connection(HOST, proxy_port)
            writer.write(b"x" * 12)
            await until(lambda: bool(signatures), what="the member to get a connection")
            writer.close()
            assert signatures[0] == b"\r\n\r\n\x00\r\nQUIT\n"  # the PROXY v2 signature
        finally:
            await engine.stop_all(0)

    run(scenario)


def test_cookie_persistence(runtime: Path) -> None:
    async def scenario() -> None:
        a, b = await HttpBackend("A").start(), await HttpBackend("B").start()
        port = free_port()
        engine = HaproxyEngine(runtime)
        try:
            await engine.apply([ServedVirtual("Common", "c", HOST, port, pool("p", a, b, persistence="cookie"),
                                              protocol="http")])
            _, headers, first = await request(port)
            cookie = headers["set-cookie"].split(";")[0]
            assert cookie.startswith("TANDEMSRV=")
            for _ in range(6):
                assert (await request(port, headers={"Host": "t", "Cookie": cookie}))[2] == first
            assert {(await request(port))[2] for _ in range(4)} == {b"A", b"B"}  # without: balanced
        finally:
            await engine.stop_all(0)

    run(scenario)


def test_https_picks_the_certificate_by_sni(runtime: Path) -> None:
    ca = TestCA()
    one, two = ca.issue("one.example", "one.example"), ca.issue("two.example", "two.example")

    def handshake(port: int, name: str) -> tuple[str, str | None, bytes]:
        context = ssl.create_default_context(cadata=ca.pem)
        context.verify_flags &= ~ssl.VERIFY_X509_STRICT  # the test CA's leaves carry no key identifiers
        context.set_alpn_protocols(["h2", "http/1.1"])
        with socket.create_connection((HOST, port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname=name) as tls:
            subject = dict(item[0] for item in tls.getpeercert()["subject"])["commonName"]
            protocol = tls.selected_alpn_protocol()
        context.set_alpn_protocols(["http/1.1"])
        with socket.create_connection((HOST, port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname=name) as tls:
            tls.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
            answer = b""
            while chunk := tls.recv(4096):
                answer += chunk
        return subject, protocol, answer.partition(b"\r\n\r\n")[2]

    async def scenario() -> None:
        a = await HttpBackend("A").start()
        port = free_port()
        engine = HaproxyEngine(runtime)
        certificates = (ServedCertificate("Common", "one", one.chain, one.key),
                        ServedCertificate("Common", "two", two.chain, two.key))
        try:
            await engine.apply([ServedVirtual("Common", "tls", HOST, port, pool("p", a), protocol="https",
                                              certificates=certificates)])
            assert engine.errors == {}
            assert await asyncio.to_thread(handshake, port, "two.example") == ("two.example", "h2", b"A")
            assert (await asyncio.to_thread(handshake, port, "one.example"))[0] == "one.example"
            files = list((runtime / "certs").iterdir())
            assert files and all(f.stat().st_mode & 0o777 == 0o600 for f in files)
            assert one.key.strip() not in (runtime / "haproxy.cfg").read_text()
        finally:
            await engine.stop_all(0)

    run(scenario)


def nice_of_threads(pid: int) -> set[int]:
    return {os.getpriority(os.PRIO_PROCESS, int(tid)) for tid in os.listdir(f"/proc/{pid}/task")}


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a worker a lower nice value than its master's needs root")
def test_configurations_load_at_the_management_priority_and_workers_serve_at_the_callers(runtime: Path) -> None:
    """The master (which parses every configuration it reloads) runs at the management priority; each worker,
    started or reloaded, is given the data plane's (here the test's, -5 for the while)."""
    traffic = -5
    assert ipc.management_nice() > traffic

    async def scenario() -> None:
        a = await HttpBackend("A").start()
        first, second = free_port(), free_port()
        engine = HaproxyEngine(runtime)
        try:
            await engine.apply([ServedVirtual("Common", "one", HOST, first, pool("p", a))])
            master = int((runtime / "haproxy.pid").read_text())
            worker = await haproxy_runtime.worker_pid(engine.process.stats_socket)
            assert nice_of_threads(master) == {ipc.management_nice()}
            assert nice_of_threads(worker) == {traffic}
            await engine.apply([ServedVirtual("Common", "one", HOST, first, pool("p", a)),
                                ServedVirtual("Common", "two", HOST, second, pool("p", a))])  # a reload
            reloaded = await new_worker(engine, worker)
            assert nice_of_threads(reloaded) == {traffic}
            assert nice_of_threads(master) == {ipc.management_nice()}
            assert (await request(second))[2] == b"A"
        finally:
            await engine.stop_all(0)
            a.close()

    before = os.getpriority(os.PRIO_PROCESS, 0)
    os.setpriority(os.PRIO_PROCESS, 0, traffic)
    try:
        run(scenario)
    finally:
        os.setpriority(os.PRIO_PROCESS, 0, before)


def test_killed_haproxy_serves_again_within_a_second(runtime: Path) -> None:
    async def scenario() -> None:
        a = await HttpBackend("A").start()
        port = free_port()
        engine = HaproxyEngine(runtime)
        try:
            await engine.apply([ServedVirtual("Common", "k", HOST, port, pool("p", a))])
            master = int((runtime / "haproxy.pid").read_text())
            os.kill(master, signal.SIGKILL)
            killed = time.monotonic()

            async def answers() -> bool:
                try:
                    return (await request(port))[2] == b"A"
                except (OSError, IndexError, ValueError):
                    return False

            while not (engine.status().restarts == 1 and await answers()):
                assert time.monotonic() - killed < 5.0, "haproxy did not come back"
                await asyncio.sleep(0.02)
            assert time.monotonic() - killed < 1.0  # about 0.3 s on a 2-core machine
            [event] = engine.status().events
            assert (event.kind, event.message) == (
                "restarted", f"haproxy (pid {master}) exited with -9: started again (restart 1)")
            assert killed - 1.0 < event.at - time.time() + time.monotonic() < killed + 1.0
        finally:
            await engine.stop_all(0)

    run(scenario)


def test_refused_configuration_keeps_the_previous_one_serving(runtime: Path) -> None:
    async def scenario() -> None:
        a = await HttpBackend("A").start()
        port, other = free_port(), free_port()
        engine = HaproxyEngine(runtime)
        good = ServedVirtual("Common", "good", HOST, port, pool("p", a), protocol="http")
        bad = ServedVirtual("Common", "bad", HOST, other, pool("p", a), protocol="http",
                            rules=(ServedRule("r", path="(", path_type="regex", action="reject"),))
        try:
            await engine.apply([good])
            await engine.apply([good, bad])
            assert "haproxy refused the configuration" in engine.errors["/Common/bad"]
            assert "regex" in engine.errors["/Common/bad"].lower() and "/Common/good" not in engine.errors
            assert engine.stats()["virtuals"]["/Common/bad"]["error"] == engine.errors["/Common/bad"]
            assert (await request(port))[2] == b"A"
            await engine.apply([good, bad])  # the same refusal again: no second event
            await engine.apply([good])
            assert engine.errors == {}
            assert [(e.kind, e.message.startswith("configuration not applied: haproxy refused"))
                    for e in engine.status().events] == [("refused", True), ("recovered", False)]
            pid = await haproxy_runtime.worker_pid(engine.process.stats_socket)
            fixed = ServedVirtual("Common", "bad", HOST, other, pool("p", a), protocol="http")
            await engine.apply([good, fixed])  # a hitless reload: a new worker serves both
            assert engine.errors == {}
            await new_worker(engine, pid)
            checked = (runtime / "candidate.cfg").read_text()  # what changed, not what was served before
            assert identifier("f", "/Common/bad") in checked and identifier("f", "/Common/good") not in checked
            assert (await request(port))[2] == (await request(other))[2] == b"A"
        finally:
            await engine.stop_all(0)

    run(scenario)


def test_shards_reload_alone_and_report_together(runtime: Path) -> None:
    names = iter(f"v{n}" for n in range(100))
    first = next(names)
    second = next(name for name in names if shard_of(f"/Common/{name}", 4) != shard_of(f"/Common/{first}", 4))

    async def scenario() -> None:
        a, b = await HttpBackend("A").start(), await HttpBackend("B").start()
        ports = free_port(), free_port()
        engine = HaproxyShards(runtime, shards=4)
        one, two = (ServedVirtual("Common", name, HOST, port, pool("p", a), protocol="http")
                    for name, port in zip((first, second), ports, strict=True))
        shard_one, shard_two = (engine.shards[shard_of(f"/Common/{name}", 4)] for name in (first, second))
        try:
            await engine.apply([one, two])
            assert sorted(path.name for path in runtime.iterdir()) == sorted(
                str(shard_of(f"/Common/{name}", 4)) for name in (first, second))  # only shards serving something
            pids = [await haproxy_runtime.worker_pid(shard.process.stats_socket) for shard in (shard_one, shard_two)]
            moved = ServedVirtual("Common", second, HOST, ports[1], pool("q", b), protocol="http")
            await engine.apply([one, moved])
            assert await haproxy_runtime.worker_pid(shard_one.process.stats_socket) == pids[0]  # untouched
            assert await haproxy_runtime.worker_pid(shard_two.process.stats_socket) != pids[1]  # reloaded
            assert (await request(ports[0]))[2] == b"A" and (await request(ports[1]))[2] == b"B"
            await engine.refresh_stats()
            stats = engine.stats()
            assert set(stats["virtuals"]) == {f"/Common/{first}", f"/Common/{second}"}
            assert all(v["listening"] for v in stats["virtuals"].values())
            assert set(stats["pools"]) == {"/Common/p", "/Common/q"}
            await engine.apply([one])  # the second shard serves nothing now, and keeps running
            assert shard_two.process.running and engine.errors == {}
            assert set(engine.virtuals) == {f"/Common/{first}"}
        finally:
            await engine.stop_all(0)
        assert not shard_one.process.running and not shard_two.process.running

    run(scenario)


def test_shards_load_their_configurations_one_at_a_time(runtime: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a CPU left to the API (`LOADS_AT_ONCE`, here 1), shards changed together check and load their
    configurations in turn, and all of them serve."""
    monkeypatch.setattr(haproxy_shards, "LOADS_AT_ONCE", 1)
    names = [f"v{n}" for n in range(40)]
    spread = list({shard_of(f"/Common/{name}", 4): name for name in names}.values())
    assert len(spread) == 4

    async def scenario() -> None:
        a = await HttpBackend("A").start()
        engine = HaproxyShards(runtime, shards=4)
        loading, most = 0, 0
        for shard in engine.shards:
            def counted(use: Callable[[str], Coroutine[Any, Any, None]]) -> Callable[[str], Coroutine[Any, Any, None]]:
                async def use_counted(text: str) -> None:
                    nonlocal loading, most
                    loading += 1
                    most = max(most, loading)
                    try:
                        await use(text)
                    finally:
                        loading -= 1
                return use_counted
            shard.process.use = counted(shard.process.use)  # type: ignore[method-assign]
        ports = [free_port() for _ in spread]
        try:
            await engine.apply([ServedVirtual("Common", name, HOST, port, pool("p", a))
                                for name, port in zip(spread, ports, strict=True)])
            assert engine.errors == {} and most == 1
            assert [(await request(port))[2] for port in ports] == [b"A"] * 4
        finally:
            await engine.stop_all(0)
            a.close()

    run(scenario)


def test_values_are_quoted_and_arrive_intact(runtime: Path) -> None:
    async def scenario() -> None:
        a, b = await HttpBackend("A").start(), await HttpBackend("B").start()
        port = free_port()
        engine = HaproxyEngine(runtime)
        name = "we'ird #name"
        rules = (ServedRule(name, headers=(("X-Tricky", TRICKY),), pool=pool(name, b)),
                 ServedRule("loc", path="/go", action="redirect", location="/to?a='1'&b=%41#x\\y"))
        newline = ServedVirtual("Common", "nl", HOST, free_port(), pool("p", a), protocol="http",
                                rules=(ServedRule("n", path="/a\nglobal", action="reject"),))
        try:
            await engine.apply([ServedVirtual("Common", name, HOST, port, pool("p", a), protocol="http", rules=rules),
                                newline])
            text = (runtime / "haproxy.cfg").read_text()
            assert name not in text and "\nglobal\n" not in text.split("defaults")[1]
            assert engine.errors["/Common/nl"].startswith("not served:")
            assert (await request(port, headers={"Host": "t", "X-Tricky": TRICKY}))[2] == b"B"
            assert (await request(port, headers={"Host": "t", "X-Tricky": TRICKY[:-1]}))[2] == b"A"
            assert (await request(port, "/go"))[1]["location"] == "/to?a='1'&b=%41#x\\y"
        finally:
            await engine.stop_all(0)

    run(scenario)


def test_rendering_quotes_every_value_and_haproxy_accepts_it(tmp_path: Path) -> None:
    assert quote("a'b") == "'a'\\''b'"
    with pytest.raises(ValueError):
        quote("a\nb")
    rules = (ServedRule("r", host="*.example.com", path=TRICKY.replace(" ", ""), headers=(("X-A", TRICKY),),
                        methods=("GET", "PUT"),
                        pool=ServedPool("Common", "p", members=(ServedMember(HOST, 81),),
                                        monitor=MonitorConfig("http", path="/h'#%\\\"$X"))),
             ServedRule("bad", headers=(("X'#", "v"),), action="reject"))
    virtuals = [ServedVirtual("Common", "a", HOST, 8080, protocol="http", rules=rules[:1]),
                ServedVirtual("Common", "b", HOST, 8081, protocol="http", rules=rules)]
    rendering = render(virtuals, tmp_path)
    assert set(rendering.errors) == {"/Common/b"}
    (tmp_path / "h.cfg").write_text(rendering.text)
    check = subprocess.run(["haproxy", "-c", "-f", str(tmp_path / "h.cfg")], capture_output=True, text=True,
                           check=False)
    assert check.returncode == 0, check.stdout + check.stderr


def test_builtin_engine_refuses_http_virtuals() -> None:
    async def scenario() -> None:
        engine = BuiltinEngine()
        await engine.apply([ServedVirtual("Common", "h", HOST, free_port(), protocol="https")])
        message = "the builtin engine serves tcp virtual servers only: run the device with --engine haproxy"
        assert engine.errors == {"/Common/h": message}
        assert engine.stats()["virtuals"]["/Common/h"]["error"] == message
        await engine.apply([])
        assert engine.errors == {} and engine.stats()["virtuals"] == {}
        await engine.stop_all(0.1)

    run(scenario)


def test_served_from_objects_reads_rules_certificates_and_weights() -> None:
    virtuals = [{"partition": "Common", "name": "v", "address": HOST, "port": 443, "protocol": "https",
                 "pool": "web", "certificates": ["site"], "forwarded_for": False,
                 "rules": [{"name": "r", "match": {"host": "a.example", "headers": [{"name": "X", "value": "1"}]},
                            "action": "forward", "pool": "/Common/api"}]}]
    pools = [{"partition": "Common", "name": "web", "persistence": "cookie",
              "members": [{"address": "10.0.0.1", "port": 80, "weight": 7}]},
             {"partition": "Common", "name": "api", "members": []}]
    certificates = [{"partition": "Common", "name": "site", "certificate": "CERT", "key": "KEY"}]
    (served,) = served_from_objects(virtuals, pools, [], certificates)
    assert served.protocol == "https" and served.forwarded_for is False
    assert served.pool is not None and served.pool.persistence == "cookie" and served.pool.members[0].weight == 7
    assert served.rules[0].pool is not None and served.rules[0].pool.key == "/Common/api"
    assert served.rules[0].headers == (("X", "1"),)
    assert served.certificates == (ServedCertificate("Common", "site", "CERT", "KEY"),)
    assert "KEY" not in repr(served.certificates[0])


def test_an_haproxy_left_by_a_previous_data_plane_process_is_stopped(runtime: Path) -> None:
    runtime.mkdir(mode=0o700, parents=True)
    (runtime / "haproxy.cfg").write_text("defaults\n    timeout client 1s\n    timeout server 1s\n"
                                         "    timeout connect 1s\n")
    left = subprocess.Popen(["haproxy", "-W", "-f", str(runtime / "haproxy.cfg"), "-p", str(runtime / "haproxy.pid")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    async def scenario() -> None:
        await until(lambda: (runtime / "haproxy.pid").exists(), what="the pid file")
        engine = HaproxyEngine(runtime)
        try:
            await engine.apply([])
            await until(lambda: left.poll() is not None, what="the old haproxy to stop")
            assert engine.process.running
        finally:
            await engine.stop_all(0)
            if left.poll() is None:
                left.kill()

    run(scenario)
