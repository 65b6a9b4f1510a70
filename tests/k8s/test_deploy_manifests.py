"""deploy/kubernetes/: the manifests apply to the test API server through the official client, the
Deployment runs the agent with options it has, and the agent gets no more rights than it uses."""

from pathlib import Path
from typing import Any

import typer
import yaml
from kubernetes import client, utils

from k8s.fakeapi import FakeKubernetes
from tandem.cli.main import app

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
GATEWAY = "gateway.networking.k8s.io"
CLUSTER_RIGHTS = {
    ("", "services", "list"), ("", "services", "watch"), ("", "nodes", "list"), ("", "nodes", "watch"),
    ("", "services/status", "patch"),
    ("discovery.k8s.io", "endpointslices", "list"), ("discovery.k8s.io", "endpointslices", "watch"),
    ("", "events", "create"), ("", "events", "patch"),
    ("networking.k8s.io", "ingresses", "list"), ("networking.k8s.io", "ingresses", "watch"),
    ("networking.k8s.io", "ingressclasses", "list"), ("networking.k8s.io", "ingressclasses", "watch"),
    ("networking.k8s.io", "ingresses/status", "patch"), ("", "secrets", "list"), ("", "secrets", "watch"),
    *((GATEWAY, resource, verb) for resource in ("gateways", "httproutes", "gatewayclasses")
      for verb in ("list", "watch")),
    (GATEWAY, "httproutes", "get"),
    *((GATEWAY, f"{resource}/status", "patch") for resource in ("gateways", "httproutes", "gatewayclasses")),
}
"""What the Kubernetes source calls, cluster-wide (and nothing else: no reading one Secret by name, no writes to
Services or Ingresses beyond their status)."""
LEASE_RIGHTS = {("coordination.k8s.io", "leases", verb) for verb in ("get", "list", "create", "update", "delete")}


def documents() -> list[dict[str, Any]]:
    return [doc for path in sorted(DEPLOY.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc]


def rights(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(group, resource, verb) for rule in rules for group in rule["apiGroups"]
            for resource in rule["resources"] for verb in rule["verbs"]}


def test_the_manifests_apply_to_the_api_server(tmp_path: Path) -> None:
    with FakeKubernetes() as fake:
        api = fake.api_client()
        for doc in documents():
            if doc["apiVersion"].startswith("gateway.networking.k8s.io/"):
                client.CustomObjectsApi(api).create_cluster_custom_object("gateway.networking.k8s.io", "v1",
                                                                          "gatewayclasses", doc)
            else:
                utils.create_from_dict(api, doc)
        deployment = client.AppsV1Api(api).read_namespaced_deployment("tandem-agent", "tandem-system")
        assert deployment.spec.replicas == 2
        assert deployment.spec.template.spec.service_account_name == "tandem-agent"
        ingress_class = client.NetworkingV1Api(api).read_ingress_class("tandem")
        assert ingress_class.spec.controller == "tandem.io/ingress-controller"
        gateway_class = fake.get("gatewayclasses", "", "tandem")
        assert gateway_class is not None and gateway_class["spec"]["controllerName"] == "tandem.io/gateway-controller"


def test_the_agent_has_the_rights_it_uses_and_no_more() -> None:
    by_kind = {(doc["kind"], doc["metadata"]["name"]): doc for doc in documents()}
    assert rights(by_kind[("ClusterRole", "tandem-agent")]["rules"]) == CLUSTER_RIGHTS
    role = by_kind[("Role", "tandem-agent-leases")]
    assert rights(role["rules"]) == LEASE_RIGHTS
    for binding in (by_kind[("ClusterRoleBinding", "tandem-agent")], by_kind[("RoleBinding", "tandem-agent-leases")]):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "tandem-agent", "namespace": "tandem-system"}]
    container = by_kind[("Deployment", "tandem-agent")]["spec"]["template"]["spec"]["containers"][0]
    assert f"--lease-namespace={role['metadata']['namespace']}" in container["args"]


def test_the_deployment_runs_the_agent_with_options_it_has() -> None:
    deployment = next(doc for doc in documents() if doc["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][:2] == ["agent", "run"]
    command = typer.main.get_command(app).commands["agent"].commands["run"]  # type: ignore[attr-defined]
    known = {name for param in command.params for name in param.opts}
    given = {arg.partition("=")[0] for arg in container["args"][2:]}
    assert given <= known, given - known
    assert {"--source", "--device", "--partition", "--environment", "--host-id"} <= given
    secret = next(doc for doc in documents() if doc["kind"] == "Secret")
    env = {item["name"]: item["valueFrom"] for item in container["env"]}
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    for variable in ("TANDEM_USERNAME", "TANDEM_PASSWORD", "TANDEM_FINGERPRINT"):
        reference = env[variable]["secretKeyRef"]
        assert reference["name"] == secret["metadata"]["name"] and reference["key"] in secret["stringData"]
