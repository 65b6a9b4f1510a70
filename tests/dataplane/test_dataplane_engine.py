"""The builtin engine: serving a desired set of virtual servers built from config dicts."""

import asyncio
import socket

import pytest
from dataplane_helpers import HOST, HttpBackend, async_test, body, closed_port, http_get, until

from tandem.dataplane import BuiltinEngine, MonitorConfig, served_from_config, served_from_objects


def config(vs_port: int, members: list[int], lb: str = "round-robin", monitor: dict | None = None,
           name: str = "www", disabled: tuple[int, ...] = ()) -> tuple[dict, dict, dict | None]:
    virtual = {"partition": "Common", "name": name, "address": HOST, "port": vs_port, "protocol": "tcp",
               "pool": "web", "traffic_group": "traffic-group-1", "enabled": True, "description": ""}
    pool = {"partition": "Common", "name": "web", "lb_method": lb, "monitor": "mon" if monitor else None,
            "members": [{"address": HOST, "port": p, "enabled": p not in disabled, "description": ""}
                        for p in members], "description": ""}
    return virtual, pool, monitor


def test_served_from_objects_resolves_references_and_traffic_groups() -> None:
    virtuals = [
        {"partition": "Common", "name": "a", "address": "127.0.100.1", "port": 80, "pool": "web",
         "traffic_group": "tg-1"},
        {"partition": "Other", "name": "b", "address": "127.0.100.2", "port": 80, "pool": "/Common/web",
         "traffic_group": "tg-2"},
        {"partition": "Common", "name": "off", "address": "127.0.100.3", "port": 80, "enabled": False},
        {"partition": "Common", "name": "orphan", "address": "127.0.100.4", "port": 80, "pool": "missing",
         "traffic_group": "tg-1"},
    ]
    pools = [{"partition": "Common", "name": "web", "lb_method": "least-connections", "monitor": "/Common/hc",
              "members": [{"address": "10.0.0.1", "port": 8080, "enabled": False}]}]
    monitors = [{"partition": "Common", "name": "hc", "type": "http", "interval": 1.0, "timeout": 3.0,
                 "path": "/ping", "expected_status": 204}]
    served = {v.key: v for v in served_from_objects(virtuals, pools, monitors)}
    assert set(served) == {"/Common/a", "/Other/b", "/Common/orphan"}
    pool = served["/Other/b"].pool
    assert pool is not None and pool.key == "/Common/web" and pool.lb_method == "least-connections"
    assert pool.monitor == MonitorConfig("http", 1.0, 3.0, "/ping", 204)
    assert [(m.key, m.enabled) for m in pool.members] == [("10.0.0.1:8080", False)]
    assert served["/Common/orphan"].pool is None
    assert [v.key for v in served_from_objects(virtuals, pools, monitors, traffic_groups={"tg-1"})] == [
        "/Common/a", "/Common/orphan"]


@async_test
async def test_apply_serves_updates_moves_and_stops() -> None:
    a, b = await HttpBackend("a").start(), await HttpBackend("b").start()
    engine = BuiltinEngine(drain_timeout=1)
    port = closed_port()
    desired = [served_from_config(*config(port, [a.port, b.port]))]
    await engine.apply(desired)
    assert engine.listening("/Common/www") and engine.errors == {}
    assert [body(await http_get(port)) for _ in range(4)] == [b"a", b"b", b"a", b"b"]

    await engine.apply(desired)  # idempotent: still the same listener
    assert [body(await http_get(port)) for _ in range(2)] == [b"a", b"b"]

    await engine.apply([served_from_config(*config(port, [a.port, b.port], disabled=(a.port,)))])
    assert [body(await http_get(port)) for _ in range(3)] == [b"b"] * 3

    moved = closed_port()
    await engine.apply([served_from_config(*config(moved, [a.port]))])
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(HOST, port)
    assert body(await http_get(moved)) == b"a"

    stats = engine.stats()
    virtual = stats["virtuals"]["/Common/www"]
    assert (virtual["port"], virtual["pool"], virtual["listening"], virtual["error"]) == (moved, "/Common/web",
                                                                                          True, None)
    assert virtual["connections_total"] == 10  # counters survive the move
    await until(lambda: engine.stats()["virtuals"]["/Common/www"]["connections_current"] == 0)
    request, answer = len(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n"), len(await http_get(a.port))
    assert engine.stats()["pools"]["/Common/web"] == {f"{HOST}:{a.port}": {
        "health": "up", "enabled": True, "state": "enabled", "weight": 1, "connections_total": 4,
        "connections_current": 0, "bytes_in": 4 * request, "bytes_out": 4 * answer}}

    await engine.apply([])
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(HOST, moved)
    assert engine.stats() == {"virtuals": {}, "pools": {}}
    await engine.stop_all(1)


@async_test
async def test_bind_failure_is_reported_and_retried() -> None:
    a = await HttpBackend("a").start()
    taken = socket.socket()
    taken.bind((HOST, 0))
    taken.listen()
    port = taken.getsockname()[1]
    ok_port = closed_port()
    engine = BuiltinEngine()
    desired = [served_from_config(*config(port, [a.port], name="clash")),
               served_from_config(*config(ok_port, [a.port], name="fine"))]
    await engine.apply(desired)
    assert set(engine.errors) == {"/Common/clash"} and "cannot listen" in engine.errors["/Common/clash"]
    assert engine.stats()["virtuals"]["/Common/clash"]["listening"] is False
    assert body(await http_get(ok_port)) == b"a"
    taken.close()
    await engine.apply(desired)
    assert engine.errors == {}
    assert body(await http_get(port)) == b"a"
    await engine.stop_all(1)


@async_test
async def test_monitor_takes_a_failing_member_out_and_back() -> None:
    a, b = await HttpBackend("a").start(), await HttpBackend("b").start()
    monitor = {"partition": "Common", "name": "mon", "type": "http", "interval": 0.05, "timeout": 2.0,
               "path": "/", "expected_status": 200}
    port = closed_port()
    engine = BuiltinEngine()
    await engine.apply([served_from_config(*config(port, [a.port, b.port], monitor=monitor))])
    members = lambda: engine.stats()["pools"]["/Common/web"]  # noqa: E731
    await until(lambda: {m["health"] for m in members().values()} == {"up"})
    b.status = 500
    await until(lambda: members()[f"{HOST}:{b.port}"]["health"] == "down")
    answers = [await http_get(port) for _ in range(4)]
    assert {body(answer) for answer in answers} == {b"a"}
    b.status = 200
    await until(lambda: members()[f"{HOST}:{b.port}"]["health"] == "up")
    assert {body(await http_get(port)) for _ in range(4)} == {b"a", b"b"}
    await engine.stop_all(1)
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("monitor ")]


def test_bad_served_config_is_refused_early() -> None:
    virtual, pool, _ = config(80, [8080], lb="fastest")
    with pytest.raises(ValueError, match="lb method"):
        served_from_config(virtual, pool, None)
    with pytest.raises(ValueError, match="monitor type"):
        MonitorConfig("icmp")


def test_a_malformed_object_is_left_out_not_fatal() -> None:
    virtuals = [{"name": "good", "address": HOST, "port": 80, "pool": "ok"},
                {"name": "bad", "address": HOST, "port": 81, "pool": "broken"}]
    pools = [{"name": "ok", "members": []}, {"name": "broken", "lb_method": "fastest", "members": []}]
    assert [v.name for v in served_from_objects(virtuals, pools, [])] == ["good"]
