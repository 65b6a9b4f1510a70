"""The Kubernetes source against the test API server (tests/k8s/fakeapi.py, spoken to through the official
client), with real devices: services reach both devices, traffic follows endpoints, status and Events
are written back, bad Services are skipped, the agent watches instead of polling."""

from pathlib import Path

from agent_helpers import AgentProcess, address_pool, agent_objects, wait_virtuals
from cluster_helpers import Cluster

from backends import Backend, ask
from k8s.fakeapi import FakeKubernetes, make_endpoint_slice, make_service
from waiting import wait_until


def kubernetes_args(kube: FakeKubernetes, where: Path) -> list[str]:
    return ["--source", "kubernetes", "--kubeconfig", str(kube.kubeconfig(where / "kubeconfig"))]


def slice_for(name: str, backends: list[Backend], port: int = 80, ready: bool = True) -> dict:
    return make_endpoint_slice(name, [("127.0.0.1", ready)] if backends else [],
                               ports=[{"name": f"port-{port}", "port": backends[0].port if backends else 1,
                                       "protocol": "TCP"}])


def ingress(kube: FakeKubernetes, name: str) -> str | None:
    service = kube.get("services", "default", name) or {}
    entries = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return entries[0]["ip"] if entries else None


def test_services_endpoints_status_and_events(lab: Cluster, kube: FakeKubernetes, tmp_path: Path) -> None:
    first, second = Backend("first"), Backend("second")
    pool, _ = address_pool()
    agent = AgentProcess(lab, "node-a", tmp_path, kubernetes_args(kube, tmp_path), pool).start()
    try:
        kube.apply("services", make_service("web", ports=[18090], annotations={"tandem.io/monitor": "tcp"}))
        kube.apply("endpointslices", slice_for("web", [first], 18090))
        kube.apply("services", make_service("internal", service_type="ClusterIP"))  # not for Tandem
        wait_virtuals(lab, {"default_web-18090"})
        address = wait_until(lambda: ingress(kube, "web"), 10, "the address written to the Service's status")
        assert agent_objects(lab.nodes[1], "virtuals")["default_web-18090"]["address"] == address
        wait_until(lambda: ask(address, 18090) == "first", 15, "traffic to the first endpoint")

        kube.apply("endpointslices", slice_for("web", [second], 18090))  # scaled: the endpoint moved
        wait_until(lambda: ask(address, 18090) == "second", 15, "traffic to the new endpoint")
        kube.apply("endpointslices", slice_for("web", [second], 18090, ready=False))
        wait_until(lambda: agent_objects(lab.nodes[1], "pools")["default_web-18090"]["members"] == [], 10,
                   "a not-ready endpoint leaves the pool")

        kube.apply("services", make_service("bad", ports=[18091], annotations={"tandem.io/colour": "blue"}))
        kube.apply("services", make_service("udp", ports=[{"name": "dns", "port": 53, "protocol": "UDP"}]))
        kube.apply("services", make_service("fixed", ports=[18092], load_balancer_ip=address))
        wait_until(lambda: {e["involvedObject"]["name"] for e in kube.events()} >= {"bad", "udp", "fixed"}, 10,
                   "Events explaining the services not served", detail=lambda: kube.events())
        reasons = {e["involvedObject"]["name"]: e["message"] for e in kube.events()}
        assert "tandem.io/colour" in reasons["bad"] and "UDP" in reasons["udp"] and "taken" in reasons["fixed"]
        assert set(agent_objects(lab.nodes[0], "virtuals")) == {"default_web-18090"}

        # a Service that was served and becomes malformed stays served as it was
        kube.apply("services", make_service("web", ports=[18090], annotations={"tandem.io/monitor": "icmp"}))
        wait_until(lambda: any(e["involvedObject"]["name"] == "web" for e in kube.events()), 10, "an Event on web")
        assert set(agent_objects(lab.nodes[0], "virtuals")) == {"default_web-18090"}

        kube.delete("services", "default", "web")
        wait_virtuals(lab, set())
        assert kube.count("list", "services") <= 2, kube.requests  # list once, then watch
        assert kube.count("watch", "services") >= 1
    finally:
        agent.stop()
        first.shutdown()
        second.shutdown()


def test_a_compacted_history_makes_the_agent_list_again(lab: Cluster, tmp_path: Path) -> None:
    kube = FakeKubernetes(bookmark_interval=3600).start()  # no bookmark carries the agent past the compaction
    pool, _ = address_pool()
    agent = AgentProcess(lab, "node-b", tmp_path, kubernetes_args(kube, tmp_path), pool).start()
    try:
        kube.apply("services", make_service("one", ports=[18093]))
        wait_virtuals(lab, {"default_one-18093"})
        wait_until(lambda: ingress(kube, "one"), 10, "the agent's last write to the Service (its status)")
        kube.apply("endpointslices", make_endpoint_slice("elsewhere", ["10.0.0.1"]))  # a change the services
        kube.compact()  # watch does not see, then the history is gone: resuming from before it is 410 Gone
        kube.close_watches()  # so the agent resumes from its last resourceVersion, gets 410 and lists again
        wait_until(lambda: kube.count("list", "services") >= 2, 10, "the agent to list the services again",
                   detail=lambda: kube.requests)
        kube.apply("services", make_service("two", ports=[18094]))
        wait_virtuals(lab, {"default_one-18093", "default_two-18094"})
        kube.delete("services", "default", "one")
        kube.delete("services", "default", "two")
        wait_virtuals(lab, set())
    finally:
        agent.stop()
        kube.stop()
