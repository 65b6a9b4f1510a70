"""IPv6 floating addresses on a real network: a dual-stack traffic group (netlab's IPv4 virtual server and one on
an IPv6 address) moves to b when a dies, and the client reaches both through b at once: b announced the IPv6
address with unsolicited neighbour advertisements (without them, the client's neighbour entry would point at
a's link-layer address for tens of seconds).

Needs root and iproute2 (skipped otherwise; CI runs as root).
"""

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from netlab import BACKEND_PORT, TRAFFIC_GROUP, VIP_PORT, Lab, ask, available, check, formed, sh

from waiting import wait_until

pytestmark = pytest.mark.skipif(available() is not None, reason=available() or "")

VIP6 = "fd00:198:18::100"
HOSTS6 = {"a": "fd00:198:18::1", "b": "fd00:198:18::2", "c": "fd00:198:18::3"}


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    with formed(Lab(tmp_path), log_lines=60) as lab:
        for host, address in HOSTS6.items():
            sh("ip", "-n", lab.ns[host].name, "addr", "add", f"{address}/64", "dev", "eth0", "nodad")
        check(lab.a.api.post("/api/pools", json={"name": "web6", "members": [
            {"address": "127.0.0.1", "port": BACKEND_PORT}]}), 201)
        check(lab.a.api.post("/api/virtuals", json={"name": "www6", "address": VIP6, "port": VIP_PORT,
                                                      "pool": "web6", "traffic_group": TRAFFIC_GROUP}), 201)
        yield lab


def test_a_dual_stack_traffic_group_moves_with_its_ipv6_address_announced(lab: Lab) -> None:
    wait_until(lambda: lab.ns["c"].run(ask, 0.2, VIP6) == "a", 15, "the IPv6 virtual server answering from a",
               lab.describe)
    assert VIP6 in {line.split()[3].split("/")[0] for line in sh(
        "ip", "-o", "-6", "addr", "show", "dev", "eth0", ns=lab.ns["a"].name).stdout.splitlines()}
    lab.fail("a")
    failed = time.monotonic()
    wait_until(lambda: lab.ns["c"].run(ask, 0.2, VIP6) == "b", 5, "the IPv6 virtual server answering from b",
               lambda: {"b": lab.b.traffic_group(), "c's neighbours": sh(
                   "ip", "-6", "neigh", ns=lab.ns["c"].name).stdout})
    assert time.monotonic() - failed < 3, "the client kept sending to a: b's neighbour advertisements missed"
    assert lab.ask(0.5) == "b"  # the IPv4 side of the group moved with it
    assert lab.mac("b") in sh("ip", "-6", "neigh", "show", VIP6, ns=lab.ns["c"].name).stdout
