"""Several agents of one environment share the services (Kubernetes source, Lease objects), with real devices:
a killed agent's share is written again within its lease; a restarted one takes a share back; a duplicate
host id is refused; no service ever has two writers; a paused agent's write that arrives after another took
its work over is refused (fencing); the agent moves to the other device when its device dies."""

import os
import signal
import time
from pathlib import Path

from agent_helpers import AgentProcess, address_pool, agent_objects, assert_one_writer_at_a_time, wait_virtuals
from cluster_helpers import Cluster, check
from cutproxy import CutProxy

from k8s.fakeapi import FakeKubernetes, make_endpoint_slice, make_service
from waiting import wait_until

SERVICES = 30
LEASE_TTL = 2.0


def publish(kube: FakeKubernetes, count: int, members: int = 1) -> None:
    for i in range(count):
        kube.apply("services", make_service(f"svc{i}", ports=[80]))
        kube.apply("endpointslices", make_endpoint_slice(f"svc{i}", [f"10.8.{i}.{m}" for m in range(1, members + 1)],
                                                         ports=[{"name": "port-80", "port": 8080}]))


def members_everywhere(lab: Cluster, count: int, members: int) -> bool:
    pools = agent_objects(lab.nodes[-1], "pools")
    return len(pools) == count and all(len(p["members"]) == members for p in pools.values())


def leases(kube: FakeKubernetes) -> dict[str, dict]:
    """The agents' Lease objects by host id."""
    return {lease["metadata"]["name"].removeprefix("tandem-test-agent-"): lease
            for lease in kube.list("leases") if "-agent-" in lease["metadata"]["name"]}


def owned(kube: FakeKubernetes) -> dict[str, int]:
    import json

    return {host: json.loads(lease["metadata"]["annotations"]["tandem.io/agent"]).get("owned", 0)
            for host, lease in leases(kube).items()}


def test_three_agents_share_take_over_rebalance_and_refuse_a_duplicate(lab: Cluster, kube: FakeKubernetes,
                                                                        tmp_path: Path) -> None:
    pool, _ = address_pool()
    args = ["--source", "kubernetes", "--kubeconfig", str(kube.kubeconfig(tmp_path / "kubeconfig"))]
    agents = {host: AgentProcess(lab, host, tmp_path, args, pool, lease_ttl=LEASE_TTL).start()
              for host in ("a", "b", "c")}
    try:
        publish(kube, SERVICES)
        wait_until(lambda: members_everywhere(lab, SERVICES, 1), 30, "every service served")
        wait_until(lambda: sum(owned(kube).values()) == SERVICES and all(owned(kube).values()), 10,
                   "the services shared by the three agents", detail=lambda: owned(kube))

        share_of_b = owned(kube)["b"]
        agents["b"].kill()
        killed = time.monotonic()
        publish(kube, SERVICES, members=2)  # every service changes: b's share is written only once it moved
        wait_until(lambda: members_everywhere(lab, SERVICES, 2), LEASE_TTL + 10, "every change written",
                   detail=lambda: {h: lease["metadata"]["annotations"] for h, lease in leases(kube).items()})
        took = time.monotonic() - killed
        assert took < LEASE_TTL + 2.5, f"b's {share_of_b} services were written again after {took:.1f} s"

        agents["b"].start()
        wait_until(lambda: owned(kube).get("b", 0) > 0 and sum(owned(kube).values()) == SERVICES, 15,
                   "b to take a share again", detail=lambda: owned(kube))
        publish(kube, SERVICES, members=3)
        wait_until(lambda: members_everywhere(lab, SERVICES, 3), 15, "changes written after the rebalance")

        duplicate = AgentProcess(lab, "a", tmp_path / "dup", args, pool, lease_ttl=LEASE_TTL)
        duplicate.log_dir.mkdir()
        duplicate.start()
        assert duplicate.process.wait(30) == 3, duplicate.log()
        assert "held by another live agent" in duplicate.log()
        publish(kube, SERVICES, members=1)
        wait_until(lambda: members_everywhere(lab, SERVICES, 1), 15, "the first agent a still working")
        assert_one_writer_at_a_time(list(agents.values()))
    finally:
        for agent in agents.values():
            agent.stop()
    for i in range(SERVICES):
        kube.delete("services", "default", f"svc{i}")


def test_a_paused_agents_late_write_is_refused_once_another_took_over(lab: Cluster, kube: FakeKubernetes,
                                                                      tmp_path: Path) -> None:
    """Agent a's batch is held on its way to the device (a proxy), a is stopped (SIGSTOP) past its lease, b
    takes the service over and writes it; then a's batch arrives and a resumes: the device refuses the batch
    (lease_lost), the partition keeps b's work, and a writes nothing until it has read the leases again."""
    pool, _ = address_pool()
    args = ["--source", "kubernetes", "--kubeconfig", str(kube.kubeconfig(tmp_path / "kubeconfig"))]
    one = lab.nodes[0].device
    proxy = CutProxy((one.host, one.port))
    paused = AgentProcess(lab, "paused", tmp_path, args, pool, lease_ttl=LEASE_TTL,
                          devices=[f"https://{proxy.address}"]).start()
    other = AgentProcess(lab, "other", tmp_path, args, pool, lease_ttl=LEASE_TTL, devices=[one.url])

    def members() -> set[tuple[str, ...]]:
        return {tuple(m["address"] for m in agent_objects(node, "pools").get("default_fenced-80", {}).get(
            "members", [])) for node in lab}

    def endpoints(address: str) -> None:
        kube.apply("endpointslices", make_endpoint_slice("fenced", [address], ports=[{"name": "port-80",
                                                                                        "port": 8080}]))

    try:
        kube.apply("services", make_service("fenced", ports=[80]))
        endpoints("10.9.0.1")
        wait_until(lambda: members() == {("10.9.0.1",)}, 20, "the first endpoint on both devices", detail=members)

        proxy.hold()
        endpoints("10.9.0.2")  # a writes this: its batch waits in the proxy
        wait_until(lambda: proxy.held > 0, 10, "agent a's batch on its way")
        os.killpg(paused.process.pid, signal.SIGSTOP)
        endpoints("10.9.0.3")
        other.start()  # takes the service over once a's lease ran out
        wait_until(lambda: members() == {("10.9.0.3",)}, LEASE_TTL + 15, "b's write on both devices",
                   detail=members)

        proxy.release()  # a's old batch reaches the device; then a wakes up
        time.sleep(1.0)
        os.killpg(paused.process.pid, signal.SIGCONT)
        deadline = time.monotonic() + 3 * LEASE_TTL
        while time.monotonic() < deadline:
            assert members() == {("10.9.0.3",)}, "a's late write was applied"
            time.sleep(0.2)
        wait_until(lambda: "the lease was lost" in paused.log(), 10, "agent a to learn it lost its lease",
                   detail=paused.log)
        endpoints("10.9.0.4")  # both work on: the service is written again, by whichever owns it now
        wait_until(lambda: members() == {("10.9.0.4",)}, 15, "the next change written", detail=members)
    finally:
        proxy.release()
        if paused.process is not None and paused.process.poll() is None:
            os.killpg(paused.process.pid, signal.SIGCONT)
        paused.stop()
        other.stop()
        proxy.close()
        kube.delete("services", "default", "fenced")


def test_the_agent_moves_to_the_other_device_and_loses_nothing(lab: Cluster, kube: FakeKubernetes,
                                                               tmp_path: Path) -> None:
    pool, _ = address_pool()
    args = ["--source", "kubernetes", "--kubeconfig", str(kube.kubeconfig(tmp_path / "kubeconfig"))]
    agent = AgentProcess(lab, "mover", tmp_path, args, pool, lease_ttl=LEASE_TTL).start()
    one, two = lab.nodes
    try:
        publish(kube, 5)
        wait_virtuals(lab, {f"default_svc{i}-80" for i in range(5)})
        one.kill()
        publish(kube, 8, members=2)  # three new services, and a change to the five
        wait_until(lambda: members_everywhere(lab, 8, 2), 20, "dev-2 to get everything from the agent")
        wait_until(lambda: two.device.url in leases(kube)["mover"]["metadata"]["annotations"]["tandem.io/agent"], 5,
                   "the agent to report that it writes to dev-2", detail=lambda: leases(kube)["mover"])
        one.start()
        wait_until(lambda: len(agent_objects(one, "pools")) == 8 and all(
            len(p["members"]) == 2 for p in agent_objects(one, "pools").values()), 30, "dev-1 to catch up by sync")
        check(one.api.get("/api/health"), 200)
    finally:
        agent.stop()
        if one.device.process is None or one.device.process.poll() is not None:
            one.start()
