"""The Kubernetes source against the test API server (tests/k8s/fakeapi.py, spoken to through the official
client), with real devices: services reach both devices, traffic follows endpoints, status and Events
are written back, bad Services are skipped, the agent watches instead of polling, and it serves only the
Services of its class, namespaces and labels (another controller's are left as they are)."""

import subprocess
from collections import Counter
from pathlib import Path

from agent_helpers import AgentProcess, address_pool, agent_objects, wait_virtuals
from cluster_helpers import Cluster

from backends import Backend, ask, http_server, named_http
from k8s.fakeapi import (
    FakeKubernetes,
    make_endpoint_slice,
    make_gateway,
    make_gateway_class,
    make_http_route,
    make_ingress,
    make_ingress_class,
    make_node,
    make_service,
    make_tls_secret,
)
from pki import TestCA
from waiting import wait_until


def kubernetes_args(kube: FakeKubernetes, where: Path) -> list[str]:
    return ["--source", "kubernetes", "--kubeconfig", str(kube.kubeconfig(where / "kubeconfig"))]


def slice_for(name: str, backends: list[Backend], port: int = 80, ready: bool = True) -> dict:
    return make_endpoint_slice(name, [("127.0.0.1", ready)] if backends else [],
                               ports=[{"name": f"port-{port}", "port": backends[0].port if backends else 1,
                                       "protocol": "TCP"}])


def ingress(kube: FakeKubernetes, name: str) -> str | None:
    return ingress_of(kube, "default", name)


def ingress_of(kube: FakeKubernetes, namespace: str, name: str) -> str | None:
    """The address written to a Service's status.loadBalancer.ingress (None: none)."""
    service = kube.get("services", namespace, name) or {}
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


def test_only_services_of_its_class_namespaces_and_labels_are_touched(lab: Cluster, kube: FakeKubernetes,
                                                                      tmp_path: Path) -> None:
    pool, _ = address_pool()
    args = [*kubernetes_args(kube, tmp_path), "--namespace", "team-a", "--namespace", "team-c",
            "--selector", "exposed=yes"]
    agent = AgentProcess(lab, "node-c", tmp_path, args, pool).start()
    labels = {"exposed": "yes"}

    def service(name: str, namespace: str = "team-a", **extra) -> None:
        kube.apply("services", make_service(name, namespace, ports=[18095], **extra))

    try:
        service("mine", labels=labels)
        service("mine", "team-c", labels=labels)
        service("metallb", labels=labels, load_balancer_class="metallb.io/metallb",
                annotations={"tandem.io/colour": "blue"})  # another controller's: not even its annotations are read
        service("unclassed", labels=labels, load_balancer_class=None)  # no class, and no --default-class
        service("unlabelled")
        service("elsewhere", "team-b", labels=labels)
        wait_virtuals(lab, {"team-a_mine-18095", "team-c_mine-18095"})
        wait_until(lambda: all(ingress_of(kube, ns, "mine") for ns in ("team-a", "team-c")), 10,
                   "the addresses written to the agent's Services")

        service("unlabelled", labels=labels)  # enters the selection
        wait_virtuals(lab, {"team-a_mine-18095", "team-c_mine-18095", "team-a_unlabelled-18095"})
        service("mine", "team-c")  # leaves it: its objects go
        wait_virtuals(lab, {"team-a_mine-18095", "team-a_unlabelled-18095"})
        for namespace, name in (("team-a", "metallb"), ("team-a", "unclassed"), ("team-b", "elsewhere")):
            assert not (kube.get("services", namespace, name) or {}).get("status"), name  # status untouched
        assert not [e for e in kube.events() if e["involvedObject"]["name"] != "mine"], kube.events()
        for namespace, name in (("team-a", "mine"), ("team-a", "unlabelled")):
            kube.delete("services", namespace, name)
        wait_virtuals(lab, set())
    finally:
        agent.stop()


def test_a_problem_that_comes_back_counts_up_its_event(lab: Cluster, kube: FakeKubernetes, tmp_path: Path) -> None:
    pool, _ = address_pool()
    agent = AgentProcess(lab, "node-d", tmp_path, kubernetes_args(kube, tmp_path), pool).start()
    broken = {"tandem.io/colour": "blue"}

    def events() -> list[dict]:
        return [e for e in kube.events() if e["involvedObject"]["name"] == "flappy"]

    try:
        for round_ in range(1, 4):
            kube.apply("services", make_service("flappy", ports=[18096], annotations=broken))
            wait_until(lambda round_=round_: [e.get("count") for e in events()] == [round_], 10,
                       f"one Event counted {round_} times", detail=events)
            kube.apply("services", make_service("flappy", ports=[18096 + round_]))  # a port of its own: the
            wait_virtuals(lab, {f"default_flappy-{18096 + round_}"})  # agent has seen the Service mended
        event = events()[0]
        assert event["reason"] == "TandemNotServed" and "tandem.io/colour" in event["message"]
        assert event["lastTimestamp"] >= event["firstTimestamp"]
        kube.delete("services", "default", "flappy")
        wait_virtuals(lab, set())
    finally:
        agent.stop()


def test_nodeport_mode_serves_when_the_pod_network_is_unreachable(lab: Cluster, kube: FakeKubernetes,
                                                                 tmp_path: Path) -> None:
    """Pods on 10.244.0.0/16 (no route from the devices); the nodes answer on their NodePort."""
    one = Backend("node-1")
    two = Backend("node-2", "127.0.0.2", one.port)  # kube-proxy on each node, the same NodePort
    pool, _ = address_pool()
    agent = AgentProcess(lab, "node-e", tmp_path, [*kubernetes_args(kube, tmp_path), "--member-mode", "nodeport"],
                         pool).start()
    ports = [{"name": "web", "port": 18098, "protocol": "TCP", "nodePort": one.port}]
    pods = make_endpoint_slice("np", ["10.244.1.5"], ports=[{"name": "web", "port": 8080}],
                               node_names={"10.244.1.5": "node-2"})

    def members() -> list[tuple[str, int]]:
        pools = agent_objects(lab.nodes[1], "pools")
        return [(m["address"], m["port"]) for m in pools.get("default_np-18098", {}).get("members", [])]

    try:
        kube.apply("nodes", make_node("node-1", "127.0.0.1"))
        kube.apply("nodes", make_node("node-2", "127.0.0.2"))
        kube.apply("nodes", make_node("node-3", "127.0.0.3", labels={
            "node.kubernetes.io/exclude-from-external-load-balancers": "true"}))
        kube.apply("services", make_service("np", ports=ports))
        kube.apply("endpointslices", pods)
        both = [("127.0.0.1", one.port), ("127.0.0.2", one.port)]
        wait_until(lambda: members() == both, 15, "both usable nodes as members", detail=members)
        address = wait_until(lambda: ingress(kube, "np"), 10, "the Service's address")
        answers = {wait_until(lambda: ask(address, 18098), 15, "traffic through a node") for _ in range(20)}
        assert answers == {"node-1", "node-2"}, answers

        kube.apply("nodes", make_node("node-2", "127.0.0.2", ready=False))
        wait_until(lambda: members() == both[:1], 15, "a node that is not ready left out", detail=members)
        kube.apply("services", make_service("np", ports=ports, spec={"externalTrafficPolicy": "Local"}))
        wait_until(lambda: members() == [], 15, "Local: no ready node has a ready endpoint", detail=members)
        kube.apply("nodes", make_node("node-2", "127.0.0.2"))
        wait_until(lambda: members() == both[1:], 15, "Local: only the node with the endpoint", detail=members)
        wait_until(lambda: ask(address, 18098) == "node-2", 15, "traffic to that node")

        kube.apply("services", make_service("np", ports=ports, annotations={"tandem.io/member-mode": "endpoints"}))
        wait_until(lambda: members() == [("10.244.1.5", 8080)], 15, "the annotation: endpoints", detail=members)
        kube.delete("services", "default", "np")
        wait_virtuals(lab, set())
    finally:
        agent.stop()
        one.shutdown()
        two.shutdown()


def curl(url: str, host: str, port: int, address: str, ca: Path | None = None) -> str:
    """What curl gets for `url` with `host:port` resolved to `address` ("" if it failed or was not 2xx)."""
    args = ["curl", "-sf", "--max-time", "2", "--resolve", f"{host}:{port}:{address}", url]
    if ca is not None:
        args += ["--cacert", str(ca)]
    done = subprocess.run(args, capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else ""


def ingress_status(kube: FakeKubernetes, name: str, namespace: str = "default") -> str | None:
    entries = (((kube.get("ingresses", namespace, name) or {}).get("status") or {}).get("loadBalancer") or {}).get(
        "ingress") or []
    return entries[0]["ip"] if entries else None


def backend_service(kube: FakeKubernetes, name: str, url: str) -> None:
    """A ClusterIP Service `name` (port 80, `http`) whose one endpoint is the HTTP server at `url`."""
    kube.apply("services", make_service(name, ports=[{"name": "http", "port": 80}], service_type="ClusterIP"))
    kube.apply("endpointslices", make_endpoint_slice(name, ["127.0.0.1"], ports=[{
        "name": "http", "port": int(url.rpartition(":")[2]), "protocol": "TCP"}]))


def test_an_ingress_with_two_hosts_and_tls_answers_curl(lab: Cluster, kube: FakeKubernetes, tmp_path: Path) -> None:
    ca = TestCA()
    (tmp_path / "ca.pem").write_text(ca.pem)
    shop_cert, blog_cert = ca.issue("shop.example.com", "shop.example.com"), ca.issue("blog.example.com",
                                                                                      "blog.example.com")
    pool, _ = address_pool()
    agent = AgentProcess(lab, "node-i", tmp_path, kubernetes_args(kube, tmp_path), pool).start()
    ports = {"tandem.io/http-port": "18180", "tandem.io/https-port": "18543"}
    with http_server(named_http("shop")) as shop, http_server(named_http("blog")) as blog, \
            http_server(named_http("v2")) as v2:
        try:
            kube.apply("ingressclasses", make_ingress_class("tandem"))
            kube.apply("ingressclasses", make_ingress_class("nginx", "k8s.io/ingress-nginx"))
            for name, url in (("shop", shop), ("blog", blog), ("v2", v2)):
                backend_service(kube, name, url)
            kube.apply("secrets", make_tls_secret("shop-tls", shop_cert.chain, shop_cert.key))
            kube.apply("secrets", make_tls_secret("blog-tls", blog_cert.chain, blog_cert.key))
            kube.apply("ingresses", make_ingress("site", [("shop.example.com", "/", "shop", 80),
                                                          ("blog.example.com", "/", "blog", "http")],
                                                 tls=[(["shop.example.com"], "shop-tls"),
                                                      (["blog.example.com"], "blog-tls")], annotations=ports))
            kube.apply("ingresses", make_ingress("theirs", [("x.example.com", "/", "shop", 80)],
                                                 ingress_class="nginx", annotations={"tandem.io/colour": "red"}))
            wait_virtuals(lab, {"ingress_default_site-18180", "ingress_default_site-18543"})
            address = wait_until(lambda: ingress_status(kube, "site"), 10, "the Ingress's status.loadBalancer")
            ca_file = tmp_path / "ca.pem"
            for host, name in (("shop.example.com", "shop"), ("blog.example.com", "blog")):
                wait_until(lambda host=host, name=name: curl(f"https://{host}:18543/cart", host, 18543, address,
                                                             ca_file) == f"{name} /cart", 15, f"https to {host}")
                # (the http and https virtual servers may be in shards of their own, which load in turn)
                wait_until(lambda host=host, name=name: curl(f"http://{host}:18180/", host, 18180, address)
                           == f"{name} /", 15, f"http to {host}")
            assert curl("http://other.example.com:18180/", "other.example.com", 18180, address) == ""  # 404

            # a new rule: traffic follows; the other class's Ingress is untouched, its status too
            kube.apply("ingresses", make_ingress("site", [("shop.example.com", "/", "shop", 80),
                                                          ("shop.example.com", "/v2", "v2", 80),
                                                          ("blog.example.com", "/", "blog", "http")],
                                                 tls=[(["shop.example.com"], "shop-tls"),
                                                      (["blog.example.com"], "blog-tls")], annotations=ports))
            host = "shop.example.com"
            wait_until(lambda: curl(f"https://{host}:18543/v2/x", host, 18543, address, ca_file) == "v2 /v2/x", 10,
                       "the new path served")
            assert curl(f"https://{host}:18543/v2x", host, 18543, address, ca_file) == "shop /v2x"  # element-wise
            assert ingress_status(kube, "theirs") is None
            assert not [e for e in kube.events() if e["involvedObject"]["name"] == "theirs"]

            # a renewed certificate replaces the old one; a bad Secret is an Event, the site stays served
            renewed = ca.issue("shop.example.com", "shop.example.com")
            kube.apply("secrets", make_tls_secret("shop-tls", renewed.chain, renewed.key))
            wait_until(lambda: renewed.fingerprint in {c["fingerprint"] for c in agent_objects(
                lab.nodes[1], "certificates").values()}, 10, "the renewed certificate on the devices")
            kube.apply("secrets", make_tls_secret("blog-tls", blog_cert.chain, shop_cert.key))
            wait_until(lambda: any("blog-tls" in e["message"] for e in kube.events()), 10, "an Event on the bad Secret",
                       detail=kube.events)
            assert curl(f"https://{host}:18543/", host, 18543, address, ca_file) == "shop /"

            kube.delete("ingresses", "default", "site")
            wait_virtuals(lab, set())
            assert not agent_objects(lab.nodes[0], "certificates")
        finally:
            agent.stop()


def condition(conditions: list[dict], kind: str) -> tuple[str, str] | None:
    found = next((c for c in conditions or [] if c["type"] == kind), None)
    return (found["status"], found["reason"]) if found else None


def test_a_gateway_with_weighted_backends_a_redirect_and_status(lab: Cluster, kube: FakeKubernetes,
                                                                tmp_path: Path) -> None:
    ca = TestCA()
    (tmp_path / "ca.pem").write_text(ca.pem)
    issued = ca.issue("shop.example.com", "shop.example.com")
    pool, _ = address_pool()
    agent = AgentProcess(lab, "node-g", tmp_path, kubernetes_args(kube, tmp_path), pool).start()
    other = {"parentRef": {"name": "elsewhere"}, "controllerName": "example.com/other",
             "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted"}]}
    with http_server(named_http("blue")) as blue, http_server(named_http("green")) as green:
        try:
            kube.apply("gatewayclasses", make_gateway_class("tandem"))
            kube.apply("gatewayclasses", make_gateway_class("theirs", "example.com/other"))
            backend_service(kube, "blue", blue)
            backend_service(kube, "green", green)
            kube.apply("secrets", make_tls_secret("shop-tls", issued.chain, issued.key))
            kube.apply("gateways", make_gateway("gw", [
                {"name": "web", "port": 18280, "protocol": "HTTP"},
                {"name": "tls", "port": 18643, "protocol": "HTTPS", "hostname": "shop.example.com",
                 "tls": {"certificateRefs": [{"name": "shop-tls"}]}}]))
            kube.apply("gateways", make_gateway("their-gw", [{"name": "web", "port": 18281, "protocol": "HTTP"}],
                                                gateway_class="theirs"))
            route = make_http_route("shop", "gw", [{"backendRefs": [{"name": "blue", "port": 80, "weight": 3},
                                                                    {"name": "green", "port": 80, "weight": 1}]}],
                                    hostnames=["shop.example.com"])
            kube.apply("httproutes", route | {"status": {"parents": [other]}})
            kube.apply("httproutes", make_http_route("old", "gw", [{"filters": [{"type": "RequestRedirect",
                "requestRedirect": {"hostname": "shop.example.com", "statusCode": 301}}]}],
                hostnames=["old.example.com"], section="web"))
            wait_virtuals(lab, {"gateway_default_gw-18280", "gateway_default_gw-18643"})

            def gateway_status() -> dict:
                return (kube.get("gateways", "default", "gw") or {}).get("status") or {}

            wait_until(lambda: condition(gateway_status().get("conditions"), "Programmed") == ("True", "Programmed"),
                       10, "the Gateway programmed", detail=gateway_status)
            status = gateway_status()
            address = status["addresses"][0]["value"]
            assert condition(status["conditions"], "Accepted") == ("True", "Accepted")
            listeners = {item["name"]: item for item in status["listeners"]}
            assert listeners["web"]["attachedRoutes"] == 2 and listeners["tls"]["attachedRoutes"] == 1
            assert condition(listeners["tls"]["conditions"], "ResolvedRefs") == ("True", "ResolvedRefs")

            host = "shop.example.com"
            for scheme, port, ca in (("http", 18280, None), ("https", 18643, tmp_path / "ca.pem")):  # each listener
                wait_until(lambda scheme=scheme, port=port, ca=ca: curl(f"{scheme}://{host}:{port}/", host, port,
                                                                        address, ca) in ("blue /", "green /"),
                           10, f"the route served on {scheme}")
            answers = Counter(curl(f"https://{host}:18643/", host, 18643, address, tmp_path / "ca.pem")
                              for _ in range(80))
            assert set(answers) == {"blue /", "green /"} and 2 <= answers["blue /"] / answers["green /"] <= 4.5, answers
            moved = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
                                    "--resolve", f"old.example.com:18280:{address}", "http://old.example.com:18280/x"],
                                   capture_output=True, text=True).stdout
            assert moved == "301 http://shop.example.com:18280/", moved  # no scheme given: the listener's port

            def parents() -> dict:
                stored = kube.get("httproutes", "default", "shop") or {}
                return {p["controllerName"]: p for p in (stored.get("status") or {}).get("parents") or []}

            wait_until(lambda: "tandem.io/gateway-controller" in parents(), 10, "the route's parent status")
            mine = parents()["tandem.io/gateway-controller"]
            assert condition(mine["conditions"], "Accepted") == ("True", "Accepted")
            assert condition(mine["conditions"], "ResolvedRefs") == ("True", "ResolvedRefs")
            assert parents()["example.com/other"] == other  # another controller's entry is left as it was
            gateway_class = kube.get("gatewayclasses", "", "tandem") or {}
            assert condition((gateway_class.get("status") or {}).get("conditions"), "Accepted") == ("True", "Accepted")
            assert not (kube.get("gatewayclasses", "", "theirs") or {}).get("status")
            assert not (kube.get("gateways", "default", "their-gw") or {}).get("status")

            # a backend that goes away: ResolvedRefs False on the route, the rest stays served
            kube.apply("httproutes", make_http_route("shop", "gw", [{"backendRefs": [
                {"name": "blue", "port": 80}, {"name": "gone", "port": 80}]}], hostnames=["shop.example.com"]))
            wait_until(lambda: condition(parents()["tandem.io/gateway-controller"]["conditions"], "ResolvedRefs")
                       == ("False", "BackendNotFound"), 10, "BackendNotFound on the route", detail=parents)
            wait_until(lambda: curl(f"http://{host}:18280/", host, 18280, address) == "blue /", 10, "blue alone")

            kube.delete("gateways", "default", "gw")
            wait_virtuals(lab, set())
        finally:
            agent.stop()
