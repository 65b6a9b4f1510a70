#!/usr/bin/env python3
"""Config sync benchmark on a 4-device group (real daemons on loopback, formed through the REST API).

(a) replication latency: writes on a rotating device, each timed from its acknowledgement until the
    other three can read it (each polled by its own thread over a keep-alive connection, tight loop);
(b) 10,000 pool members written one by one on dev-1 with auto-sync on: writes/s, then the time until
    every member holds them all;
(c) a 5th device added to the group with those 10,000 objects present: time from the PATCH adding it
    until it holds all 10,000 and the group is In Sync on it.

Prints progress on stderr and, last, one JSON line with p50_ms, p99_ms, initial_sync_10k_s,
autosync_writes_per_s (and more, and the machine).

    .venv/bin/python bench/sync.py [--writes N] [--objects N]
"""

import argparse
import http.client
import json
import ssl
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import machine, percentile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "cluster"))

from cluster_helpers import GROUP, Cluster, check, wait_until

from tandem import Client, Pool, PoolMember


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def member_address(i: int) -> str:
    return f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"


class RawApi:
    """One keep-alive HTTPS connection with a bearer token: the cheapest way to ask a device a question."""

    def __init__(self, node) -> None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        device = node.device
        self.connection = http.client.HTTPSConnection(device.host, device.port, context=context, timeout=30)
        token = self._request("POST", "/api/auth/login", {"username": "admin", "password": device.admin_password})
        self.headers = {"Authorization": f"Bearer {json.loads(token[1])['token']}"}

    def _request(self, method: str, path: str, body: dict | None = None, headers: dict | None = None):
        payload = None if body is None else json.dumps(body).encode()
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        try:
            self.connection.request(method, path, body=payload, headers=all_headers)
            response = self.connection.getresponse()
        except http.client.RemoteDisconnected:  # the device closed the idle connection: a new one, once
            self.connection.close()
            self.connection.request(method, path, body=payload, headers=all_headers)
            response = self.connection.getresponse()
        return response.status, response.read()

    def status_of(self, path: str) -> int:
        return self._request("GET", path, headers=self.headers)[0]

    def get(self, path: str) -> dict:
        status, body = self._request("GET", path, headers=self.headers)
        if status != 200:
            raise RuntimeError(f"GET {path}: {status} {body[:200]!r}")
        return json.loads(body)

    def get_if_ok(self, path: str) -> dict | None:
        """The answer to GET `path`, None unless it is 200 (a device catching up answers 503)."""
        status, body = self._request("GET", path, headers=self.headers)
        return json.loads(body) if status == 200 else None


class Poller(threading.Thread):
    """Polls one device for a path until it answers 200; reports when it saw it."""

    def __init__(self, node) -> None:
        super().__init__(daemon=True, name=f"poll-{node.name}")
        self.api = RawApi(node)
        self.go = threading.Event()
        self.done = threading.Event()
        self.path = ""
        self.seen_at = 0.0
        self.stopping = False

    def watch(self, path: str) -> None:
        self.path, self.seen_at = path, 0.0
        self.done.clear()
        self.go.set()

    def run(self) -> None:
        while True:
            self.go.wait()
            self.go.clear()
            if self.stopping:
                return
            while self.api.status_of(self.path) != 200:
                pass
            self.seen_at = time.perf_counter()
            self.done.set()


def replication_latency(cluster: Cluster, writes: int) -> list[float]:
    """(a): milliseconds from each acknowledged write until the three other devices can read it."""
    nodes = cluster.nodes
    writers = [RawApi(n) for n in nodes]
    pollers = {n.name: Poller(n) for n in nodes}
    for poller in pollers.values():
        poller.start()
    samples = []
    for i in range(writes + 10):
        k = i % len(nodes)
        status, body = writers[k]._request("POST", "/api/pools", {"name": f"lat-{i}"}, writers[k].headers)
        acked = time.perf_counter()
        if status != 201:
            raise RuntimeError(f"write {i} on {nodes[k].name}: {status} {body[:200]!r}")
        others = [pollers[n.name] for j, n in enumerate(nodes) if j != k]
        for poller in others:
            poller.watch(f"/api/pools/Common/lat-{i}")
        for poller in others:
            if not poller.done.wait(30):
                raise RuntimeError(f"lat-{i} (written on {nodes[k].name}) not on {poller.name} after 30 s")
        if i >= 10:  # the first ten warm up connections and caches
            samples.append((max(p.seen_at for p in others) - acked) * 1000)
        if (i + 1) % 50 == 0:
            progress(f"latency: {i + 1} writes, median so far {percentile(samples, 0.5):.1f} ms")
    for poller in pollers.values():
        poller.stopping = True
        poller.go.set()
    return samples


def member_count(api: RawApi, pool: str) -> int:
    count, path = 0, f"/api/pools/Common/{pool}/members?limit=10000&fields=address"
    while path:
        body = api.get(path)
        count += body["num_records"]
        path = body["next"]
    return count


def wait_for_members(nodes, pool: str, count: int, timeout: float) -> float:
    """Until every node holds `count` members of `pool`; seconds waited."""
    started = time.perf_counter()
    last = f"/api/pools/Common/{pool}/members/{member_address(count - 1)}:80"
    apis = [RawApi(n) for n in nodes]
    for api, node in zip(apis, nodes, strict=True):
        while api.status_of(last) != 200:
            if time.perf_counter() - started > timeout:
                raise RuntimeError(f"{node.name} lacks {last} after {timeout} s")
            time.sleep(0.01)
        while member_count(api, pool) < count:
            if time.perf_counter() - started > timeout:
                raise RuntimeError(f"{node.name} holds {member_count(api, pool)} of {count} after {timeout} s")
            time.sleep(0.05)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=240)
    parser.add_argument("--objects", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tandem-bench-sync-") as work:
        cluster = Cluster(Path(work))
        try:
            started = time.perf_counter()
            nodes = cluster.start("dev-1", "dev-2", "dev-3", "dev-4")
            cluster.form()
            progress(f"4-device group In Sync in {time.perf_counter() - started:.1f} s")

            samples = replication_latency(cluster, args.writes)
            progress(f"latency: p50 {percentile(samples, 0.5):.1f} ms, p99 {percentile(samples, 0.99):.1f} ms")

            one = nodes[0]
            client = Client(one.device.url, "admin", one.device.admin_password, fingerprint=one.device.fingerprint)
            Pool(name="bulk", connection=client).post()
            started = batch_started = time.perf_counter()
            for i in range(args.objects):
                PoolMember("Common", "bulk", address=member_address(i), port=80, connection=client).post()
                if (i + 1) % 2000 == 0:
                    now = time.perf_counter()
                    progress(f"bulk: {i + 1} members written on dev-1, the last 2000 at "
                             f"{2000 / (now - batch_started):.0f}/s")
                    batch_started = now
            write_s = time.perf_counter() - started
            client.close()
            replicate_s = wait_for_members(nodes[1:], "bulk", args.objects, 600)
            cluster.wait_in_sync(timeout=120)
            progress(f"bulk: {args.objects} members everywhere {replicate_s:.2f} s after the last write")

            (five,) = cluster.start("dev-5")
            check(cluster.trust_request(one, five), 201)
            cluster.wait_trusted(cluster.nodes)
            started = time.perf_counter()
            check(one.api.patch(f"/api/device-groups/{GROUP}", json={"members": cluster.names}), 200)
            wait_for_members([five], "bulk", args.objects, 600)
            wait_until(lambda: five.status()["status"] == "In Sync", 600, "dev-5 In Sync",
                       detail=lambda: five.status(), interval=0.01)
            initial_s = time.perf_counter() - started
            progress(f"initial sync of dev-5: {initial_s:.2f} s")
        finally:
            cluster.close()
    print(json.dumps({
        "p50_ms": round(percentile(samples, 0.5), 2),
        "p99_ms": round(percentile(samples, 0.99), 2),
        "initial_sync_10k_s": round(initial_s, 2),
        "autosync_writes_per_s": round(args.objects / write_s),
        "replicate_10k_after_last_write_s": round(replicate_s, 2),
        "latency_samples": len(samples),
        "objects": args.objects,
        "devices": 4,
        "machine": machine(),
    }))


if __name__ == "__main__":
    main()
