"""Failover on a real network: two `tandem serve` devices (address provider `linux`) and a client in
network namespaces on one bridge (see `netlab.py`), the floating address 198.18.0.100 moved by the
devices themselves (address on eth0, gratuitous ARP) and reached by the client through the kernel.

Needs root and iproute2 (skipped otherwise; CI runs as root).
"""

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from netlab import ADDR, TRAFFIC_GROUP, VIP, Lab, available, check, formed, sh

from waiting import wait_until

pytestmark = pytest.mark.skipif(available() is not None, reason=available() or "")

INTERVAL, TIMEOUT = 0.2, 1.0
"""The default heartbeat timers."""
MARGIN = 2.0
"""Slack over the heartbeat timeout for a loaded machine: scheduling, the data plane's reconciliation,
gratuitous ARP, the client's 50 ms connect timeout."""


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """The lab formed: a active, b standby, the virtual server answering from a. Always torn down;
    the devices' logs are printed (shown when the test fails)."""
    with formed(Lab(tmp_path, interval=INTERVAL, timeout=TIMEOUT), log_lines=60) as lab:
        yield lab


def dataplane_addresses(lab: Lab, name: str) -> list[str]:
    return check(lab.hosts[name].api.get("/api/dataplane"), 200).json()["addresses"]


def test_takeover_when_the_active_host_dies(lab: Lab) -> None:
    # Formed: only a holds the floating address, and the client is served by a.
    assert VIP in lab.a.addresses() and VIP not in lab.b.addresses()
    assert dataplane_addresses(lab, "a") == [VIP] and dataplane_addresses(lab, "b") == []
    assert [lab.ask(0.5) for _ in range(5)] == ["a"] * 5
    # b, standby on a host of its own, listens ahead on the address it does not hold: a takeover only moves it
    def ready() -> dict:
        return check(lab.b.api.get("/api/dataplane"), 200).json()["virtuals"].get("/Common/www") or {}

    wait_until(lambda: (ready().get("address"), ready().get("listening")) == (VIP, True), 5, "b listening ahead",
               detail=ready)
    # The anchor's failure, while the client polls: a's link down, then its daemon killed with -9.
    polling = lab.poll_until("b", deadline_s=TIMEOUT + MARGIN + 5)
    time.sleep(0.3)
    failed_at = time.monotonic()
    lab.fail("a")
    answered_at = polling.result()
    assert answered_at is not None, f"the virtual server never answered from b\n{lab.describe()}"
    takeover = answered_at - failed_at
    assert takeover < TIMEOUT + MARGIN, f"takeover took {takeover:.2f} s\n{lab.describe()}"
    assert takeover > TIMEOUT * 0.5, f"b took over in {takeover:.2f} s, before it could know a was dead"

    # b says so: active, a dead; it holds the address; the transition is an event.
    group = lab.b.traffic_group()
    assert group["state"] == "active" and group["active_device"] == "b", group
    assert {m["name"]: m["alive"] for m in group["members"]} == {"a": False, "b": True}, group
    assert VIP in lab.b.addresses()
    # The client is served as soon as the address is up (HAProxy listened ahead); the data plane process
    # learns of the move from the failover process a moment later.
    wait_until(lambda: dataplane_addresses(lab, "b") == [VIP], 1, "b's data plane holding the address",
               detail=lambda: dataplane_addresses(lab, "b"))
    last = lab.b.events()[-1]
    assert (last["traffic_group"], last["from_state"], last["to_state"]) == ("traffic-group-1", "standby", "active")
    assert "no active device" in last["reason"], last
    assert [lab.ask(0.5) for _ in range(5)] == ["b"] * 5


def test_partition_then_heal(lab: Lab) -> None:
    # Cut a off the bridge: each device hears nothing from the other, and both take the traffic group.
    cut_at = time.monotonic()
    lab.bridge_port("a", up=False)

    def both_active() -> bool:
        groups = {name: lab.hosts[name].traffic_group() for name in ("a", "b")}
        return all(g["state"] == "active" and sum(m["alive"] for m in g["members"]) == 1 for g in groups.values())

    wait_until(both_active, TIMEOUT + MARGIN, "a and b both active, each alone", lab.describe)
    assert time.monotonic() - cut_at > TIMEOUT * 0.5
    assert VIP in lab.a.addresses() and VIP in lab.b.addresses()
    wait_until(lambda: lab.ask() == "b", MARGIN, "the client (on b's side) served by b", lab.describe)

    # Heal: within one heartbeat timeout (+ margin) exactly one stays active, the first in HA order,
    # and both devices say so.
    healed_at = time.monotonic()
    lab.bridge_port("a", up=True)

    def one_active() -> bool:
        groups = {name: lab.hosts[name].traffic_group() for name in ("a", "b")}
        return (groups["a"]["state"] == "active" and groups["b"]["state"] == "standby"
                and all(g["active_device"] == "a" for g in groups.values())
                and all(m["alive"] for g in groups.values() for m in g["members"]))

    wait_until(one_active, TIMEOUT + MARGIN, "a alone active after the heal, on both devices", lab.describe)
    settled = time.monotonic() - healed_at
    assert settled < TIMEOUT + MARGIN
    last = lab.b.events()[-1]
    assert (last["from_state"], last["to_state"]) == ("active", "standby"), last
    assert "a is also active" in last["reason"], last
    assert VIP not in lab.b.addresses()

    # The client is served by a again: b gave the address up, and a must win the client's
    # neighbour entry back from b (which announced the address during the partition).
    answered = lab.poll_until("a", deadline_s=TIMEOUT + MARGIN).result()
    assert answered is not None, (
        f"the virtual server did not answer from a within {TIMEOUT + MARGIN} s of the heal\n{lab.describe()}")
    assert [lab.ask(0.5) for _ in range(5)] == ["a"] * 5


def test_a_device_that_loses_its_gateway_hands_the_traffic_group_over(tmp_path: Path) -> None:
    """A gateway tracker on the traffic group: a's route to the gateway (host d) cut, a scores 50 against b's
    100, b takes over once its score hold is over and says why; the route back, the scores are equal again and
    the group stays on b (no auto-failback)."""
    gateway = ADDR["d"]
    with formed(Lab(tmp_path, others=("d",)), log_lines=60) as lab:
        check(lab.a.api.patch(f"/api/traffic-groups/{TRAFFIC_GROUP}", json={"score_hold": 0.5, "trackers": [
            {"type": "gateway", "target": gateway, "weight": 50, "interval": 0.2, "timeout": 0.2}]}), 200)
        wait_until(lambda: all([t["up"] for t in host.failover()["trackers"]] == [True] for host in (lab.a, lab.b)),
                   10, "the gateway tracker up on a and b", lab.describe)
        sh("ip", "-n", lab.ns["a"].name, "route", "add", "blackhole", f"{gateway}/32")
        wait_until(lambda: lab.b.state() == "active" and lab.a.state() == "standby", 5,
                   "b active once a lost its gateway", lab.describe)
        why = f"a score 50 < b score 100: gateway {gateway} down"
        assert lab.b.events()[-1]["reason"] == why
        assert lab.a.events()[-1]["reason"] == f"b is also active: {why}"
        seen = {m["name"]: (m["score"], m["down"]) for m in lab.b.traffic_group()["members"]}
        assert seen == {"a": (50, [f"gateway {gateway}"]), "b": (100, [])}, seen
        [tracker] = lab.a.failover()["trackers"]
        assert tracker["tracker"] == f"gateway {gateway}" and not tracker["up"] and tracker["why"], tracker
        wait_until(lambda: lab.ask(0.5) == "b", 5, "the virtual server answering from b")
        sh("ip", "-n", lab.ns["a"].name, "route", "del", "blackhole", f"{gateway}/32")
        wait_until(lambda: lab.a.failover()["trackers"][0]["up"], 5, "a's gateway tracker up again")
        time.sleep(1.0)
        assert lab.b.state() == "active" and lab.a.state() == "standby", "equal scores: the group stays on b"


def test_pool_and_interface_trackers_hand_the_traffic_group_to_the_healthier_device(tmp_path: Path) -> None:
    """A pool tracker (the pool's members as each device probes them: its own backend on 127.0.0.1) and an
    interface tracker (a veth pair of each host, `up0` and its peer `up0p`): a's backend killed, a's pool is down
    and b takes the group; a's backend back, the group stays on b; b's `up0` loses carrier (its peer set down),
    b scores less and a takes the group back, at once (netlink, not a poll), saying why."""
    with formed(Lab(tmp_path), log_lines=60) as lab:
        for host in ("a", "b"):
            ns = lab.ns[host].name
            sh("ip", "-n", ns, "link", "add", "up0", "type", "veth", "peer", "name", "up0p")
            sh("ip", "-n", ns, "link", "set", "up0", "up")
            sh("ip", "-n", ns, "link", "set", "up0p", "up")
        check(lab.a.api.post("/api/monitors", json={"name": "tcp-fast", "type": "tcp", "interval": 0.2,
                                                     "timeout": 0.2}), 201)
        check(lab.a.api.patch("/api/pools/Common/web", json={"monitor": "tcp-fast"}), 200)
        check(lab.a.api.patch(f"/api/traffic-groups/{TRAFFIC_GROUP}", json={"score_hold": 0.3, "trackers": [
            {"type": "pool", "target": "/Common/web", "weight": 50, "interval": 0.2, "fall": 1, "rise": 1},
            {"type": "interface", "target": "up0", "weight": 30}]}), 200)
        wait_until(lambda: all([t["up"] for t in h.failover()["trackers"]] == [True, True] for h in (lab.a, lab.b)),
                   10, "both trackers up on a and b", lab.describe)

        lab.a.backend.kill()
        wait_until(lambda: lab.b.state() == "active" and lab.a.state() == "standby", 5,
                   "b active once a's pool is down", lab.describe)
        assert lab.b.events()[-1]["reason"] == "a score 50 < b score 100: pool /Common/web down"
        pool = next(t for t in lab.a.failover()["trackers"] if t["tracker"] == "pool /Common/web")
        assert not pool["up"] and pool["why"] == "0 of 1 members up (50% needed)", pool
        wait_until(lambda: lab.ask(0.5) == "b", 5, "the virtual server answering from b")

        lab.a.start_backend()
        wait_until(lambda: all(t["up"] for t in lab.a.failover()["trackers"]), 5, "a's pool up again")
        time.sleep(0.6)
        assert lab.b.state() == "active", "equal scores: the group stays on b"

        sh("ip", "-n", lab.ns["b"].name, "link", "set", "up0p", "down")
        wait_until(lambda: lab.a.state() == "active" and lab.b.state() == "standby", 3,
                   "a active once b's up0 lost carrier", lab.describe)
        assert lab.a.events()[-1]["reason"] == "b score 70 < a score 100: interface up0 down"
        interface = next(t for t in lab.b.failover()["trackers"] if t["tracker"] == "interface up0")
        assert not interface["up"] and interface["why"] == "no carrier", interface
