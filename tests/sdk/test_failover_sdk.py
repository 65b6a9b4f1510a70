"""The failover SDK against real devices: two `tandem serve` processes on loopback formed into a
sync-failover group with ClusterManager, real heartbeats between them. No mocks.

The devices are shared by the tests of this module (each test uses traffic groups of its own).
"""

import contextlib
import random
import time

import pytest

from backends import Backend, ask
from tandem import Client, Failover, Pool, TandemError, TrafficGroup, VirtualServer
from tandem.sdk import connection
from waiting import not_found, wait_until

TIMEOUT = 10.0
"""Failover moves within the heartbeat timeout (1 s) plus a heartbeat; replication well under a second."""


def test_traffic_group_crud_replicates_and_validates(pair: list[Client]) -> None:
    one, two = pair
    group = TrafficGroup(name="tg-crud", device_group="dg", ha_order=["dev-2", "dev-1"],
                         addresses=["127.77.0.9"], connection=one).post()
    assert (group.name, group.device_group, group.ha_order, group.addresses, group.auto_failback,
            group.description) == ("tg-crud", "dg", ["dev-2", "dev-1"], ["127.77.0.9"], False, "")
    assert "tg-crud" in {g.name for g in TrafficGroup.get_collection(connection=one)}
    assert TrafficGroup.find(connection=one, name="tg-c*").ha_order == ["dev-2", "dev-1"]

    # a record of the trust domain: it reaches the other member
    replica = wait_until(lambda: TrafficGroup(name="tg-crud").get(connection=two),
                         TIMEOUT, "tg-crud on dev-2", retry=not_found)
    assert replica.to_dict() == group.to_dict()

    replica.auto_failback = True
    replica.description = "changed on dev-2"
    assert replica.patch(connection=two).auto_failback is True
    wait_until(lambda: TrafficGroup(name="tg-crud").get(connection=one).auto_failback,
               TIMEOUT, "the change on dev-1", retry=not_found)

    with pytest.raises(TandemError) as caught:
        TrafficGroup(name="tg-crud", device_group="dg").post(connection=one)
    assert (caught.value.status_code, caught.value.code) == (409, "conflict")
    with pytest.raises(TandemError) as caught:
        TrafficGroup(name="tg-bad", device_group="nope").post(connection=one)
    assert (caught.value.status_code, caught.value.target) == (422, "device_group")
    with pytest.raises(TandemError) as caught:
        TrafficGroup(name="tg-bad", device_group="dg", ha_order=["dev-9"]).post(connection=one)
    assert (caught.value.status_code, caught.value.target) == (422, "ha_order")
    with pytest.raises(TandemError) as caught:
        TrafficGroup(name="tg-bad", device_group="dg", addresses=["127.77.0.9"]).post(connection=one)
    assert (caught.value.status_code, caught.value.target) == (409, "addresses")  # floats with tg-crud already

    TrafficGroup(name="tg-crud").delete(connection=two)
    wait_until(lambda: "tg-crud" not in {g.name for g in TrafficGroup.get_collection(connection=one)},
               TIMEOUT, "tg-crud gone from dev-1", retry=not_found)
    with pytest.raises(TandemError) as caught:
        TrafficGroup(name="tg-crud").get(connection=one)
    assert caught.value.code == "not_found"


def test_status_events_force_standby_offline_online(pair: list[Client]) -> None:
    one, two = pair
    tg = "tg-ops"
    TrafficGroup(name=tg, device_group="dg", ha_order=["dev-1", "dev-2"], connection=one).post()
    failover_one, failover_two = Failover(one), Failover(two)
    assert failover_one.wait_active(tg, "dev-1", timeout=TIMEOUT)["state"] == "active"
    assert failover_two.wait_active(tg, "dev-1", timeout=TIMEOUT)["state"] == "standby"

    status = failover_two.status()
    assert (status["device"], status["device_group"], status["offline"], status["state"]) == (
        "dev-2", "dg", False, "online")
    assert status["heartbeat"]["received"] > 0 and status["heartbeat"]["forged"] == 0
    entry = next(g for g in status["traffic_groups"] if g["name"] == tg)
    assert entry["ha_order"] == ["dev-1", "dev-2"]
    assert {m["name"]: (m["alive"], m["state"]) for m in entry["members"]} == {
        "dev-1": (True, "active"), "dev-2": (True, "standby")}
    seen = TrafficGroup(name=tg).status(connection=two)
    assert (seen["name"], seen["state"], seen["active_device"], seen["declined"]) == (tg, "standby", "dev-1", False)
    assert failover_one.active_device(tg) == "dev-1"
    with pytest.raises(TandemError) as caught:
        failover_one.traffic_group("no-such-group")
    assert caught.value.code == "not_found"

    # only the active device can be forced to standby
    with pytest.raises(TandemError) as caught:
        failover_two.force_standby(tg)
    assert (caught.value.status_code, caught.value.code) == (409, "conflict")
    with pytest.raises(TandemError) as caught:
        failover_one.force_standby("no-such-group")
    assert caught.value.status_code == 404

    after = TrafficGroup(name=tg).force_standby(connection=one)
    assert after["device"] == "dev-1"
    forced = next(g for g in after["traffic_groups"] if g["name"] == tg)
    assert forced["state"] == "standby" and forced["declined"] is True
    failover_two.wait_active(tg, "dev-2", timeout=TIMEOUT)
    failover_one.wait_active(tg, "dev-2", timeout=TIMEOUT)

    # online clears the forced standby; without auto-failback dev-2 keeps the traffic group
    assert failover_one.online()["offline"] is False
    assert failover_one.traffic_group(tg)["declined"] is False
    time.sleep(1.5)
    assert failover_one.active_device(tg) == "dev-2"

    # offline: dev-2 takes no traffic group, dev-1 takes over
    offline = failover_two.offline()
    assert (offline["offline"], offline["state"]) == (True, "offline")
    failover_one.wait_active(tg, "dev-1", timeout=TIMEOUT)
    wait_until(lambda: failover_two.traffic_group(tg)["state"] == "offline",
               TIMEOUT, "dev-2 offline for the group", retry=not_found)
    wait_until(lambda: next(m for m in failover_one.traffic_group(tg)["members"] if m["name"] == "dev-2")["offline"],
               TIMEOUT, "dev-1 to hear that dev-2 is offline", retry=not_found)
    assert failover_two.online()["state"] == "online"
    wait_until(lambda: failover_two.traffic_group(tg)["state"] == "standby",
               TIMEOUT, "dev-2 standby again", retry=not_found)
    assert failover_one.active_device(tg) == "dev-1"

    # events: oldest first, filtered, limited
    events = failover_one.events(traffic_group=tg)
    assert {e["traffic_group"] for e in events} == {tg}
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    assert set(events[0]) == {"id", "at", "traffic_group", "from_state", "to_state", "reason", "kind"}
    assert {e["kind"] for e in events} == {"transition"}
    transitions = [(e["from_state"], e["to_state"]) for e in events]
    assert ("active", "standby") in transitions and ("standby", "active") in transitions
    assert "forced to standby" in [e["reason"] for e in events]
    assert "device is offline" in [e["reason"] for e in failover_two.events(traffic_group=tg)]
    assert len(failover_one.events(limit=1)) == 1
    assert failover_one.events(traffic_group="no-such-group") == []
    with pytest.raises(TandemError) as caught:
        failover_one.events(limit=0)
    assert caught.value.status_code in (400, 422)

    TrafficGroup(name=tg).delete(connection=one)


def test_default_connection(pair: list[Client]) -> None:
    one, two = pair
    failover = Failover()
    with pytest.raises(TandemError) as caught:
        failover.status()
    assert caught.value.code == "no_connection"
    with one:
        assert failover.status()["device"] == "dev-1"
        assert failover.status(connection=two)["device"] == "dev-2"
    connection.set_default(two)
    try:
        assert Failover().status()["device"] == "dev-2"
    finally:
        connection.set_default(None)
    assert repr(Failover(one)) == f"Failover({one!r})"






def test_virtual_server_and_pool_stats_on_the_active_device(pair: list[Client]) -> None:
    one, two = pair
    tg = "tg-stats"
    backend = Backend("stats-backend")
    vip = (f"127.{random.randint(100, 200)}.{random.randint(0, 255)}.7", random.randint(20000, 60000))
    try:
        TrafficGroup(name=tg, device_group="dg", ha_order=["dev-2", "dev-1"], connection=one).post()
        Failover(one).wait_active(tg, "dev-2", timeout=TIMEOUT)
        Failover(two).wait_active(tg, "dev-2", timeout=TIMEOUT)
        Pool(name="stats-pool", members=[{"address": "127.0.0.1", "port": backend.port}], connection=one).post()
        virtual = VirtualServer(name="stats-vs", address=vip[0], port=vip[1], pool="stats-pool", traffic_group=tg,
                                connection=one).post()
        wait_until(lambda: ask(*vip) == "stats-backend", TIMEOUT, "the virtual server to answer", retry=not_found)
        stats = wait_until(lambda: (s := virtual.stats(connection=two))["connections_total"] >= 1 and s,
                           TIMEOUT, "a connection counted on dev-2", retry=not_found)
        assert (stats["address"], stats["port"], stats["pool"], stats["listening"]) == (
            vip[0], vip[1], "/Common/stats-pool", True)
        assert {"connections_current", "bytes_in", "bytes_out", "error"} <= set(stats)
        members = Pool(name="stats-pool").stats(connection=two)
        member = members[f"127.0.0.1:{backend.port}"]
        assert member["health"] == "up" and member["enabled"] is True and member["connections_total"] >= 1

        # the standby does not serve it
        with pytest.raises(TandemError) as caught:
            virtual.stats(connection=one)
        assert (caught.value.status_code, caught.value.code) == (404, "not_found")
        with pytest.raises(TandemError) as caught:
            Pool(name="stats-pool").stats(connection=one)
        assert caught.value.status_code == 404
        served = Failover(two).dataplane()
        assert served["virtuals"]["/Common/stats-vs"]["listening"] is True
        assert "/Common/stats-vs" not in Failover(one).dataplane()["virtuals"]
    finally:
        backend.shutdown()
        for cleanup in (lambda: VirtualServer(name="stats-vs").delete(connection=one),
                        lambda: Pool(name="stats-pool").delete(connection=one),
                        lambda: TrafficGroup(name=tg).delete(connection=one)):
            with contextlib.suppress(TandemError):
                cleanup()
