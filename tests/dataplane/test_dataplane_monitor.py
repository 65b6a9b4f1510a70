"""Health monitors probing real members on loopback."""

import asyncio

from dataplane_helpers import HOST, HttpBackend, async_test, closed_port, until

from tandem.dataplane import MonitorConfig, PoolMonitor, probe

FAST_HTTP = MonitorConfig("http", interval=0.05, timeout=2.0, path="/health", expected_status=200)
FAST_TCP = MonitorConfig("tcp", interval=0.05, timeout=2.0)


@async_test
async def test_http_monitor_follows_the_status_code() -> None:
    backend = await HttpBackend("a").start()
    key = f"{HOST}:{backend.port}"
    monitor = PoolMonitor("/Common/web", FAST_HTTP, [(HOST, backend.port)])
    assert monitor.state(key) == "unchecked"
    monitor.start()
    await until(lambda: monitor.state(key) == "up", what="up")
    backend.status = 500
    await until(lambda: monitor.state(key) == "down", what="down on 500")
    backend.status = 200
    await until(lambda: monitor.state(key) == "up", what="up again on 200")
    await monitor.stop()
    request = backend.requests[0].decode()
    assert request.startswith("GET /health HTTP/1.")
    assert f"\r\nHost: {key}\r\n" in request


@async_test
async def test_tcp_monitor_marks_a_closed_port_down() -> None:
    backend = await HttpBackend("a").start()
    dead = closed_port()
    monitor = PoolMonitor("/Common/web", FAST_TCP, [(HOST, dead), (HOST, backend.port)])
    monitor.start()
    await until(lambda: monitor.states() == {f"{HOST}:{dead}": "down", f"{HOST}:{backend.port}": "up"})
    backend.close()
    await until(lambda: monitor.state(f"{HOST}:{backend.port}") == "down", what="down once closed")
    await monitor.stop()


@async_test
async def test_probes_are_bounded_by_the_timeout() -> None:
    silent = await asyncio.start_server(lambda r, w: asyncio.sleep(30), HOST, 0)  # accepts, never answers
    port = silent.sockets[0].getsockname()[1]
    config = MonitorConfig("http", interval=0.05, timeout=0.2)
    assert await asyncio.wait_for(probe(config, HOST, port), 5) is False
    silent.close()


@async_test
async def test_no_monitor_means_up_and_nothing_probed() -> None:
    monitor = PoolMonitor("/Common/web", None, [(HOST, closed_port())])
    monitor.start()
    assert set(monitor.states().values()) == {"up"}
    assert monitor.state("10.9.9.9:80") == "up"
    await monitor.stop()


@async_test
async def test_update_follows_members_and_monitor_changes() -> None:
    a, b = await HttpBackend("a").start(), await HttpBackend("b").start()
    ka, kb = f"{HOST}:{a.port}", f"{HOST}:{b.port}"
    monitor = PoolMonitor("/Common/web", FAST_TCP, [(HOST, a.port)])
    monitor.start()
    await until(lambda: monitor.state(ka) == "up")
    await monitor.update(FAST_TCP, [(HOST, a.port), (HOST, b.port)])
    assert monitor.state(ka) == "up"  # kept
    await until(lambda: monitor.state(kb) == "up", what="the new member probed")
    await monitor.update(FAST_TCP, [(HOST, b.port)])
    assert set(monitor.states()) == {kb}
    a.status = b.status = 404
    await monitor.update(FAST_HTTP, [(HOST, b.port)])  # a new monitor starts over
    await until(lambda: monitor.state(kb) == "down", what="down under the http monitor")
    await monitor.update(None, [(HOST, b.port)])
    assert monitor.state(kb) == "up"
    await monitor.stop()
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("monitor ")]
