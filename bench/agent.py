#!/usr/bin/env python3
"""Agent benchmark: the test Kubernetes API server (tests/k8s/fakeapi.py), a 2-device cluster (real daemons on
loopback) and `tandem agent run` processes (Kubernetes source, real official client).

(a) initial: with one agent running and Kubernetes empty, 1,000 Services of 10 ready endpoints each are
    created; time until every virtual server, with its 10 members, exists on both devices;
(b) change: one endpoint added at a time; time from the change in Kubernetes until the member is in the
    pool on the device the agent writes to (polled over a keep-alive connection): p50 and p99;
(c) takeover: a second agent joins and they share the work; one is killed (-9) and at once an endpoint of
    every one of its services changes; time until another agent has written them (one atomic batch: the
    last of them is polled, then all are checked); beside the lease time.

Prints progress on stderr and, last, one JSON line with initial_1000_s, change_p50_ms, change_p99_ms,
agent_takeover_s, lease_ttl_s (and the machine).

    .venv/bin/python bench/agent.py [--services N] [--endpoints N] [--changes N] [--lease-ttl S]
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from common import machine, percentile
from sync import RawApi, progress

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "cluster"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from agent_helpers import PARTITION, TG, AgentProcess, setup_cluster
from cluster_helpers import Cluster, wait_until

from k8s.fakeapi import FakeKubernetes, make_endpoint_slice, make_service
from tandem.agents.runtime import owner

PORT = 8080
POOL = f"{TG}=127.200.0.1-127.200.15.254"


def endpoints(i: int, count: int) -> list[str]:
    return [f"10.{i // 256}.{i % 256}.{m}" for m in range(1, count + 1)]


def publish(kube: FakeKubernetes, i: int, count: int) -> None:
    kube.apply("endpointslices", make_endpoint_slice(f"svc{i}", endpoints(i, count),
                                                     ports=[{"name": f"port-{PORT}", "port": 9000}]))


def served(api: RawApi, services: int, members: int) -> bool:
    """Every virtual server and pool (with all its members) on the device; counts first, as they are cheaper."""
    if api.get(f"/api/virtuals?partition={PARTITION}&limit=10000&fields=name")["num_records"] != services:
        return False
    pools = api.get(f"/api/pools?partition={PARTITION}&limit=10000&fields=members")["records"]
    return len(pools) == services and all(len(p["members"]) == members for p in pools)


def members_of(api: RawApi, i: int) -> int:
    return len(api.get(f"/api/pools/{PARTITION}/default_svc{i}-{PORT}")["members"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--lease-ttl", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tandem-bench-agent-") as tmp, FakeKubernetes() as kube:
        base = Path(tmp)
        cluster = Cluster(base / "cluster")
        cluster.base_dir.mkdir()
        agents: list[AgentProcess] = []
        try:
            progress("starting a 2-device cluster")
            setup_cluster(cluster)
            kubernetes = ["--source", "kubernetes", "--kubeconfig", str(kube.kubeconfig(base / "kubeconfig"))]
            agents.append(AgentProcess(cluster, "a", base, kubernetes, POOL, lease_ttl=args.lease_ttl).start())
            wait_until(lambda: any("-agent-a" in lease["metadata"]["name"] for lease in kube.list("leases")), 30,
                       "the agent to join")
            apis = [RawApi(node) for node in cluster]

            progress(f"(a) {args.services} services of {args.endpoints} endpoints")
            started = time.perf_counter()
            for i in range(args.services):
                kube.apply("services", make_service(f"svc{i}", ports=[PORT]))
                publish(kube, i, args.endpoints)
            wait_until(lambda: all(served(api, args.services, args.endpoints) for api in apis), 300,
                       "every virtual server on both devices", interval=0.2)
            initial = time.perf_counter() - started

            progress(f"(b) {args.changes} endpoint changes")
            change_ms = []
            for n in range(args.changes):
                i = n * 7 % args.services
                publish(kube, i, args.endpoints + 1)
                changed = time.perf_counter()
                while members_of(apis[0], i) != args.endpoints + 1:
                    pass
                change_ms.append((time.perf_counter() - changed) * 1000)
                publish(kube, i, args.endpoints)
                while members_of(apis[0], i) != args.endpoints:
                    pass

            progress("(c) a second agent, then one killed")
            agents.append(AgentProcess(cluster, "b", base, kubernetes, POOL, lease_ttl=args.lease_ttl).start())
            theirs = [i for i in range(args.services) if owner(f"default/svc{i}", ["a", "b"]) == "b"]
            time.sleep(args.lease_ttl + 2)  # b has joined and taken its share
            agents[1].kill()
            killed = time.perf_counter()
            for i in theirs:
                publish(kube, i, args.endpoints + 2)
            # the survivor writes them in one atomic batch (under 1,000 operations): one of them tells when;
            # polling all of them would add its own half second
            wait_until(lambda: members_of(apis[0], theirs[-1]) == args.endpoints + 2, 120,
                       "the killed agent's services written by the other", interval=0.01)
            takeover = time.perf_counter() - killed
            wait_until(lambda: all(members_of(apis[0], i) == args.endpoints + 2 for i in theirs), 30,
                       "every one of them written")
        finally:
            for agent in agents:
                agent.stop()
            cluster.close()
    print(json.dumps({
        "initial_1000_s": round(initial, 2), "services": args.services, "endpoints": args.endpoints,
        "change_p50_ms": round(percentile(change_ms, 0.5), 1), "change_p99_ms": round(percentile(change_ms, 0.99), 1),
        "agent_takeover_s": round(takeover, 2), "lease_ttl_s": args.lease_ttl, "taken_over": len(theirs),
        "machine": machine(),
    }))


if __name__ == "__main__":
    main()
