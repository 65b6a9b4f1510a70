#!/usr/bin/env python3
"""Cluster peering benchmark: two lab clusters of two devices each (real daemons on loopback), their
intercluster listeners behind cut proxies.

(a) pairing: an offer on east, accepted on west; time of west's create (SPAKE2, then the TLS-PSK
    sessions to both east devices open) — the median of several rounds;
(b) mirroring a partition of 1,000 pools: time from the mirror's creation until both west devices
    hold all of it;
(c) a change on east (a new pool) until both west devices can read it: p50 and p99;
(d) the link cut: time until west shows the peer unavailable; healed: until available again.

Prints progress on stderr and, last, one JSON line of figures and the machine.

    .venv/bin/python bench/peering.py [--rounds N] [--changes N] [--objects N]
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from common import machine, percentile
from sync import Poller, RawApi, progress

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "cluster"))

from cluster_helpers import Cluster, check, wait_until
from peering_helpers import Site, create_peer, start_site


def pairing(a: Site, b: Site, rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        passphrase = create_peer(a, {"authentication": {"generate_passphrase": True}})["authentication"]["passphrase"]
        started = time.perf_counter()
        made = create_peer(b, {"remote": {"ip_addresses": a.addresses}, "authentication": {"passphrase": passphrase}})
        samples.append((time.perf_counter() - started) * 1000)
        assert made["status"]["state"] == "available", made
        check(b.api.delete(f"/api/cluster/peers/{made['uuid']}"), 200)
        wait_until(lambda: a.peers() == [], 10, "east to drop its side")
    return samples


def count(api: RawApi, partition: str) -> int:
    return api.get(f"/api/pools?partition={partition}&limit=10000&fields=name")["num_records"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--objects", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tandem-bench-peering-") as tmp:
        clusters = [Cluster(Path(tmp) / name) for name in ("east", "west")]
        sites: list[Site] = []
        try:
            for cluster in clusters:
                cluster.base_dir.mkdir()
            progress("starting two clusters of two devices")
            a, b = start_site(clusters[0], "east"), start_site(clusters[1], "west")
            sites += [a, b]
            progress(f"(a) pairing, {args.rounds} rounds")
            pair_ms = pairing(a, b, args.rounds)

            offer = create_peer(a, {"authentication": {"generate_passphrase": True}})
            passphrase = offer["authentication"]["passphrase"]
            create_peer(b, {"remote": {"ip_addresses": a.addresses}, "authentication": {"passphrase": passphrase}})
            a.wait_state("available")
            writer = RawApi(a.nodes[0])
            check(a.api.post("/api/partitions", json={"name": "bench"}), 201)
            progress(f"(b) mirroring {args.objects} pools")
            for i in range(args.objects):
                status, body = writer._request("POST", "/api/pools", {"partition": "bench", "name": f"p{i}"},
                                               writer.headers)
                assert status == 201, body
            readers = [RawApi(node) for node in b.nodes]
            started = time.perf_counter()
            check(a.api.post(f"/api/cluster/peers/{a.peer()['uuid']}/mirrors", json={"partition": "bench"}), 201)
            wait_until(lambda: all(count(r, "bench") == args.objects for r in readers), 120, "the mirror",
                       interval=0.01)
            initial_s = time.perf_counter() - started

            progress(f"(c) {args.changes} changes")
            pollers = [Poller(node) for node in b.nodes]
            for poller in pollers:
                poller.start()
            change_ms = []
            for i in range(args.changes):
                status, body = writer._request("POST", "/api/pools", {"partition": "bench", "name": f"c{i}"},
                                               writer.headers)
                acked = time.perf_counter()
                assert status == 201, body
                for poller in pollers:
                    poller.watch(f"/api/pools/bench/c{i}")
                for poller in pollers:
                    assert poller.done.wait(30), f"change {i} never reached {poller.name}"
                change_ms.append((max(p.seen_at for p in pollers) - acked) * 1000)

            progress("(d) cut and heal the link")
            started = time.perf_counter()
            a.cut()  # west reaches east through these proxies (it accepted with their addresses)
            wait_until(lambda: b.peer()["status"]["state"] == "unavailable", 30, "unavailable", interval=0.01)
            detect_s = time.perf_counter() - started
            started = time.perf_counter()
            a.heal()
            wait_until(lambda: b.peer()["status"]["state"] == "available", 30, "available", interval=0.01)
            recover_s = time.perf_counter() - started
        finally:
            for site in sites:
                site.close()
            for cluster in clusters:
                cluster.close()
    print(json.dumps({
        "pair_p50_ms": round(percentile(pair_ms, 0.5), 1),
        "initial_mirror_s": round(initial_s, 2), "objects": args.objects,
        "change_p50_ms": round(percentile(change_ms, 0.5), 2), "change_p99_ms": round(percentile(change_ms, 0.99), 2),
        "detect_cut_s": round(detect_s, 2), "recover_s": round(recover_s, 2),
        "machine": machine(),
    }))


if __name__ == "__main__":
    main()
