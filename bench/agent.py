#!/usr/bin/env python3
"""Agent benchmark: the test Kubernetes API server (tests/k8s/fakeapi.py, in a process of its own), a 2-device
cluster (real daemons on loopback) and `tandem agent run` processes (Kubernetes source, real official client).

(a) initial: with one agent running and Kubernetes empty, 10,000 LoadBalancer Services of 10 ready endpoints
    each and 1,000 Ingresses of 5 host rules each (backends among those Services) are created; time until
    every virtual server and every pool, with its 10 members, exists on both devices; then the agent's
    resident memory;
(b) change, once the devices are idle (the active one's HAProxy takes a while to load it all: how long is
    printed): one endpoint added at a time; time from the change
    in Kubernetes until the member is in the pool on both devices (each polled over a keep-alive connection,
    a millisecond between rounds: a tight loop is a client taking a core of the device it waits for): p50
    and p99;
(c) ingress change: an Ingress in front of two real HTTP servers has its rule's backend switched, one
    at a time; time from the change in Kubernetes until a request (a new connection each time) to the
    Ingress's address is answered by the new backend: p50 and p99;
(d) takeover: a second agent joins and they share the work; one is killed (-9) and at once an endpoint of
    100 of its services changes; time until the other agent has written all of them; beside the lease time.

Prints progress on stderr and, last, one JSON line with initial_10k_s, change_p50_ms, change_p99_ms,
ingress_change_p50_ms, ingress_change_p99_ms, agent_rss_mb, agent_rss_mb_per_1000 (per 1,000 of the
Services and Ingresses served), agent_takeover_s, lease_ttl_s (and the machine).

    .venv/bin/python bench/agent.py [--services N] [--ingresses N] [--endpoints N] [--changes N] [--lease-ttl S]
                                    [--keep DIR]
"""

import argparse
import contextlib
import datetime
import http.client
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from multiprocessing.managers import BaseManager
from pathlib import Path

from common import machine, percentile
from sync import RawApi, progress

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "cluster"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from agent_helpers import PARTITION, TG, AgentProcess, setup_cluster
from cluster_helpers import Cluster, wait_until

from backends import http_server, named_http
from k8s.fakeapi import FakeKubernetes, make_endpoint_slice, make_ingress, make_ingress_class, make_service
from tandem.agents.objects import base_name
from tandem.agents.runtime import owner

PORT = 8080
POOL = f"{TG}=127.200.0.1-127.200.63.254"
RULES = 5
PROBE_PORT = 18380
TAKEOVER_SAMPLE = 100


class _Manager(BaseManager):
    pass


def _started() -> FakeKubernetes:
    return FakeKubernetes().start()


_Manager.register("Kubernetes", _started, exposed=("apply", "get", "list", "kubeconfig", "stop"))


@contextlib.contextmanager
def kubernetes_process() -> Iterator[FakeKubernetes]:
    """The test Kubernetes API server in a process of its own, driven through a proxy: in this process it shared
    one GIL with the polling that measures, and the agent's requests waited for it."""
    manager = _Manager()
    manager.start()
    kube = manager.Kubernetes()  # type: ignore[attr-defined]
    try:
        yield kube
    finally:
        kube.stop()
        manager.shutdown()


def endpoints(i: int, count: int) -> list[str]:
    return [f"10.{i // 256 % 256}.{i % 256}.{m}" for m in range(1, count + 1)]


def publish(kube: FakeKubernetes, i: int, count: int) -> None:
    kube.apply("endpointslices", make_endpoint_slice(f"svc{i}", endpoints(i, count),
                                                     ports=[{"name": f"port-{PORT}", "port": 9000}]))


def ingress(j: int, services: int) -> dict:
    return make_ingress(f"ing{j}", [(f"h{r}.ing{j}.bench", "/", f"svc{(j * RULES + r) % services}", PORT)
                                    for r in range(RULES)])


def records(api: RawApi, resource: str, fields: str) -> list[dict]:
    """Every record of the partition's `resource` (pages of 10,000 followed)."""
    found, path = [], f"/api/{resource}?partition={PARTITION}&limit=10000&fields={fields}"
    while path:
        page = api.get(path)
        found += page["records"]
        path = page.get("next")
    return found


def served(api: RawApi, virtuals: int, pools: int, members: int) -> bool:
    """Every virtual server and pool (with all its members) on the device; counts first, as they are cheaper."""
    if len(records(api, "virtuals", "name")) != virtuals:
        return False
    found = records(api, "pools", "members")
    return len(found) == pools and all(len(p["members"]) == members for p in found)


def served_at(apis: list[RawApi], sentinels: list[str], virtuals: int, pools: int, members: int) -> float:
    """When every virtual server and pool (with all its members) was on both devices: the start of the first
    complete check. A complete check reads every object (a second of a device's time with 10,000 services),
    so it runs only once a sample of the virtual servers (`sentinels`, cheap single reads) is there, and
    then at most every few seconds: polling the whole configuration twice a second slowed the devices
    measured."""
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        if all(api.status_of(f"/api/virtuals/{PARTITION}/{name}") == 200 for api in apis for name in sentinels):
            checked = time.perf_counter()
            if all(served(api, virtuals, pools, members) for api in apis):
                return checked
            time.sleep(3)
        else:
            time.sleep(0.2)
    raise RuntimeError("not every virtual server on both devices after 900 s")


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds used so far by process `root` and every process below it (a device's data plane process: its
    HAProxy masters and workers), those reaped included."""
    parents, used = {}, {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
            used[int(entry.name)] = sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    tree, grown = {root}, True
    while grown:
        below = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= below
        grown = bool(below)
    return sum(used.get(pid, 0.0) for pid in tree)


def settle(roots: list[int], idle: float = 0.05, window: float = 4.0, timeout: float = 300) -> float:
    """Wait until the processes `roots` (with all below them: a device's) used less than `idle` of a CPU over
    `window` seconds (longer than the pauses a data plane takes between rounds to stay within its share of a
    core); how long that took. Asking a data plane process for its status meanwhile would load it more."""
    started = time.perf_counter()
    before = sum(tree_cpu_seconds(root) for root in roots)
    while time.perf_counter() - started < timeout:
        time.sleep(window)
        now = sum(tree_cpu_seconds(root) for root in roots)
        if now - before < idle * window:
            return time.perf_counter() - started - window
        before = now
    raise RuntimeError(f"the data planes still busy after {timeout} s")


def listening(apis: list[RawApi]) -> int:
    """Virtual servers listening on the devices (only the active device serves them; 0 while one catches up)."""
    count = 0
    for api in apis:
        status = api.get_if_ok("/api/dataplane")
        if status is None:
            return 0
        count += sum(stats.get("listening", False) for stats in status["virtuals"].values())
    return count


def loaded(apis: list[RawApi], virtuals: int, timeout: float = 300) -> float:
    """Wait until every virtual server listens (asked every 3 s: the status of 11,000 is a second of a device's
    time): an idle window alone was fooled by a data plane pausing between rounds to stay within its CPU share);
    how long that took."""
    started = time.perf_counter()
    while listening(apis) < virtuals:
        if time.perf_counter() - started > timeout:
            raise RuntimeError(f"not every virtual server listening after {timeout} s")
        time.sleep(3)
    return time.perf_counter() - started


def waited_for_cpu(pid: int) -> float:
    """Seconds the main thread of process `pid` has spent ready to run but waiting for a CPU (schedstat)."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9


def members_of(api: RawApi, i: int) -> int:
    return len(api.get(f"/api/pools/{PARTITION}/default_svc{i}-{PORT}")["members"])


def arrived(apis: list[RawApi], i: int, members: int, since: float) -> tuple[float, float]:
    """Seconds from `since` until service `i`'s pool has `members` members on every device (each read in turn,
    a millisecond between rounds), and the longest single read."""
    waiting, longest = list(apis), 0.0
    while True:
        for api in list(waiting):
            started = time.perf_counter()
            if members_of(api, i) == members:
                waiting.remove(api)
            longest = max(longest, time.perf_counter() - started)
        if not waiting:
            return time.perf_counter() - since, longest
        time.sleep(0.001)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def answer(address: str, host: str) -> str:
    """The body a request for `host` at the Ingress's address gets ("" if none)."""
    connection = http.client.HTTPConnection(address, PROBE_PORT, timeout=1)
    try:
        connection.request("GET", "/", headers={"Host": host})
        response = connection.getresponse()
        return response.read().decode() if response.status == 200 else ""
    except OSError:
        return ""
    finally:
        connection.close()


def ingress_changes(kube: FakeKubernetes, count: int) -> list[float]:
    """(c): switch a probe Ingress's backend between two real servers; ms until traffic follows, each time."""
    host, times = "probe.bench", []
    with http_server(named_http("one")) as one, http_server(named_http("two")) as two:
        for name, url in (("one", one), ("two", two)):
            kube.apply("services", make_service(f"probe-{name}", ports=[{"name": "http", "port": 80}],
                                                service_type="ClusterIP"))
            kube.apply("endpointslices", make_endpoint_slice(f"probe-{name}", ["127.0.0.1"], ports=[
                {"name": "http", "port": int(url.rpartition(":")[2])}]))

        def probe(backend: str) -> dict:
            return make_ingress("probe", [(host, "/", f"probe-{backend}", 80)],
                                annotations={"tandem.io/http-port": str(PROBE_PORT)})

        kube.apply("ingresses", probe("one"))
        address = wait_until(lambda: ((((kube.get("ingresses", "default", "probe") or {}).get("status") or {})
                                       .get("loadBalancer") or {}).get("ingress") or [{}])[0].get("ip"), 600,
                             "the probe Ingress's address")  # behind the status of every service created
        wait_until(lambda: answer(address, host) == "one /", 60, "the probe Ingress served", interval=0.05)
        for n in range(count):
            backend = ("two", "one")[n % 2]
            kube.apply("ingresses", probe(backend))
            changed = time.perf_counter()
            wait_until(lambda backend=backend: answer(address, host) == f"{backend} /", 30,
                       f"traffic to {backend}", interval=0.005)
            times.append((time.perf_counter() - changed) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--ingresses", type=int, default=1000)
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--ingress-changes", type=int, default=20)
    parser.add_argument("--lease-ttl", type=float, default=5.0)
    parser.add_argument("--keep", type=Path, help="a new directory to run in and keep (the devices' and agents' "
                                                   "logs), instead of a temporary one")
    args = parser.parse_args()
    workplace = contextlib.nullcontext(str(args.keep)) if args.keep else tempfile.TemporaryDirectory(
        prefix="tandem-bench-agent-")
    if args.keep:
        args.keep.mkdir(parents=True)
    with workplace as tmp, kubernetes_process() as kube:
        base = Path(tmp)
        cluster = Cluster(base / "cluster")
        cluster.base_dir.mkdir()
        agents: list[AgentProcess] = []
        try:
            progress("starting a 2-device cluster")
            setup_cluster(cluster)
            kube.apply("ingressclasses", make_ingress_class())
            kubernetes = ["--source", "kubernetes", "--kubeconfig", str(kube.kubeconfig(base / "kubeconfig"))]
            agents.append(AgentProcess(cluster, "a", base, kubernetes, POOL, lease_ttl=args.lease_ttl).start())
            wait_until(lambda: any("-agent-a" in lease["metadata"]["name"] for lease in kube.list("leases")), 30,
                       "the agent to join")
            apis = [RawApi(node) for node in cluster]

            progress(f"(a) {args.services} services of {args.endpoints} endpoints, {args.ingresses} ingresses")
            started = time.perf_counter()
            for i in range(args.services):
                kube.apply("services", make_service(f"svc{i}", ports=[PORT]))
                publish(kube, i, args.endpoints)
            for j in range(args.ingresses):
                kube.apply("ingresses", ingress(j, args.services))
            backends = len({(j * RULES + r) % args.services for j in range(args.ingresses) for r in range(RULES)})
            virtuals, pools = args.services + args.ingresses, args.services + args.ingresses * RULES
            sentinels = ([f"{base_name(f'default/svc{i}')}-{PORT}" for i in range(0, args.services, 250)]
                         + [f"{base_name(f'ingress:default/ing{j}')}-80" for j in range(0, args.ingresses, 25)])
            initial = served_at(apis, sentinels, virtuals, pools, args.endpoints) - started
            memory = rss_mb(agents[0].process.pid)
            progress(f"    {initial:.1f} s ({backends} ingress backends), agent {memory:.0f} MB")
            listens = loaded(apis, virtuals)
            settled = settle([node.device.process.pid for node in cluster.nodes])
            progress(f"    every virtual server listening {listens:.1f} s later (the active one's HAProxy loading it"
                     f" all), the devices idle {settled:.1f} s after that")

            progress(f"(b) {args.changes} endpoint changes")
            change_ms, longest_read_ms, queued_ms = [], [], []
            device_pids = [node.device.process.pid for node in cluster.nodes]
            for n in range(args.changes):
                i = n * 7 % args.services
                queued = [waited_for_cpu(pid) for pid in device_pids]
                publish(kube, i, args.endpoints + 1)
                changed = time.perf_counter()
                took, longest = arrived(apis, i, args.endpoints + 1, changed)
                change_ms.append(took * 1000)
                longest_read_ms.append(longest * 1000)
                queued_ms.append(max(waited_for_cpu(pid) - before for pid, before in zip(device_pids, queued,
                                                                                          strict=True)) * 1000)
                publish(kube, i, args.endpoints)
                arrived(apis, i, args.endpoints, time.perf_counter())

            slowest = sorted(zip(change_ms, longest_read_ms, queued_ms, range(args.changes), strict=True))[-5:]
            progress(f"    slowest {', '.join(f'{ms:.0f}' for ms, _, _, _ in slowest)} ms (changes number"
                     f" {', '.join(str(n + 1) for _, _, _, n in slowest)}; their longest single read of the pool:"
                     f" {', '.join(f'{read:.0f}' for _, read, _, _ in slowest)} ms; a device's management process"
                     f" waited for a CPU up to {', '.join(f'{wait:.0f}' for _, _, wait, _ in slowest)} ms)")
            progress(f"(c) {args.ingress_changes} ingress rule changes")
            ingress_ms = ingress_changes(kube, args.ingress_changes)
            progress(f"    slowest {', '.join(f'{ms:.0f}' for ms in sorted(ingress_ms)[-5:])} ms")

            progress("(d) a second agent, then one killed")
            agents.append(AgentProcess(cluster, "b", base, kubernetes, POOL, lease_ttl=args.lease_ttl).start())
            theirs = [i for i in range(args.services) if owner(f"default/svc{i}", ["a", "b"]) == "b"]
            sample = theirs[:: max(1, len(theirs) // TAKEOVER_SAMPLE)][:TAKEOVER_SAMPLE]
            wait_until(lambda: members_of(apis[0], sample[0]) == args.endpoints, 1)
            time.sleep(args.lease_ttl + 2)  # b has joined and taken its share
            agents[1].kill()
            killed = time.perf_counter()
            progress(f"    b killed at {datetime.datetime.now().time()} (the agents' logs' clock)")
            for i in sample:
                publish(kube, i, args.endpoints + 2)
            waiting = list(sample)
            while waiting:
                waiting = [i for i in waiting if members_of(apis[0], i) != args.endpoints + 2]
                if time.perf_counter() - killed > 120:
                    raise RuntimeError(f"{len(waiting)} services of the killed agent not written after 120 s")
            takeover = time.perf_counter() - killed
        finally:
            for agent in agents:
                agent.stop()
            cluster.close()
    served_units = args.services + args.ingresses
    print(json.dumps({
        "initial_10k_s": round(initial, 2), "services": args.services, "ingresses": args.ingresses,
        "rules_per_ingress": RULES, "endpoints": args.endpoints,
        "change_p50_ms": round(percentile(change_ms, 0.5), 1), "change_p99_ms": round(percentile(change_ms, 0.99), 1),
        "ingress_change_p50_ms": round(percentile(ingress_ms, 0.5), 1),
        "ingress_change_p99_ms": round(percentile(ingress_ms, 0.99), 1),
        "agent_rss_mb": round(memory, 1), "agent_rss_mb_per_1000": round(memory / (served_units / 1000), 1),
        "agent_takeover_s": round(takeover, 2), "lease_ttl_s": args.lease_ttl, "taken_over": len(theirs),
        "machine": machine(),
    }))


if __name__ == "__main__":
    main()
