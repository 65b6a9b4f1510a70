"""The fake Kubernetes API server, driven through the official ``kubernetes`` client."""

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException
from kubernetes.informer import SharedInformer

from k8s.fakeapi import FakeKubernetes, make_endpoint_slice, make_node, make_service
from waiting import wait_until

SERVICE_NAME = "kubernetes.io/service-name"


@pytest.fixture
def fake() -> Iterator[FakeKubernetes]:
    with FakeKubernetes(bookmark_interval=0.2) as server:
        yield server


@pytest.fixture
def api(fake: FakeKubernetes, tmp_path: Path) -> client.ApiClient:
    """A client configured from the fake's kubeconfig, as an agent would be."""
    return config.new_client_from_config(config_file=str(fake.kubeconfig(tmp_path / "kubeconfig")))


@pytest.fixture
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture
def discovery(api: client.ApiClient) -> client.DiscoveryV1Api:
    return client.DiscoveryV1Api(api)


@pytest.fixture
def coordination(api: client.ApiClient) -> client.CoordinationV1Api:
    return client.CoordinationV1Api(api)


def collect(func: Callable[..., Any], *args: Any, until: Callable[[list[dict]], bool] | None = None,
            during: Callable[[], None] | None = None, **kwargs: Any) -> list[dict]:
    """Watch through ``kubernetes.watch.Watch``; stop when ``until(events)`` holds or on timeout_seconds.
    ``during`` runs in a thread once the stream is open."""
    events: list[dict] = []
    w = watch.Watch()
    for event in w.stream(func, *args, **kwargs):
        if during:
            threading.Thread(target=during, daemon=True).start()
            during = None
        events.append(event)
        if until and until(events):
            w.stop()
    return events


def reason(exc: ApiException) -> str:
    return json.loads(exc.body)["reason"]


def test_list_then_watch_sees_changes_of_services(fake: FakeKubernetes, core: client.CoreV1Api) -> None:
    fake.apply("Service", make_service("a", annotations={"x": "1"}))
    listed = core.list_service_for_all_namespaces()
    assert [s.metadata.name for s in listed.items] == ["a"]
    assert listed.items[0].spec.type == "LoadBalancer"
    rv = listed.metadata.resource_version
    fake.apply("Service", make_service("b"))  # before the watch: replayed from history
    fake.apply("Service", make_service("a", annotations={"x": "2"}))

    def later() -> None:
        time.sleep(0.3)
        fake.delete("Service", "default", "a")

    started = time.monotonic()
    events = collect(core.list_namespaced_service, "default", resource_version=rv, timeout_seconds=20,
                     during=later, until=lambda evs: len(evs) == 3)
    assert time.monotonic() - started < 10  # streamed as it happened, not at the end of the timeout
    assert [(e["type"], e["object"].metadata.name) for e in events] == [
        ("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "a")]
    assert isinstance(events[1]["object"], client.V1Service)
    assert events[1]["object"].metadata.annotations == {"x": "2"}
    versions = [int(e["object"].metadata.resource_version) for e in events]
    assert versions == sorted(versions) and versions[0] > int(rv)


def test_list_then_watch_sees_changes_of_endpointslices(fake: FakeKubernetes,
                                                        discovery: client.DiscoveryV1Api) -> None:
    fake.apply("EndpointSlice", make_endpoint_slice("a", ["10.0.0.1"], namespace="ns1"))
    listed = discovery.list_endpoint_slice_for_all_namespaces()
    assert listed.items[0].endpoints[0].conditions.ready is True
    rv = listed.metadata.resource_version

    def changes() -> None:
        fake.apply("EndpointSlice", make_endpoint_slice("a", ["10.0.0.1", ("10.0.0.2", False)], namespace="ns1"))
        fake.apply("EndpointSlice", make_endpoint_slice("b", ["10.0.1.1"], namespace="ns2"))
        fake.delete("EndpointSlice", "ns1", "a-slice")

    changes()
    events = collect(discovery.list_endpoint_slice_for_all_namespaces, resource_version=rv, timeout_seconds=1)
    assert [(e["type"], e["object"].metadata.namespace) for e in events] == [
        ("MODIFIED", "ns1"), ("ADDED", "ns2"), ("DELETED", "ns1")]
    assert [ep.conditions.ready for ep in events[0]["object"].endpoints] == [True, False]
    assert events[0]["object"].metadata.generation == 2


def test_watch_without_resource_version_starts_with_current_state(fake: FakeKubernetes,
                                                                   core: client.CoreV1Api) -> None:
    fake.apply("Service", make_service("a"))
    fake.apply("Service", make_service("b", namespace="other"))
    events = collect(core.list_namespaced_service, "default", timeout_seconds=1)
    assert [(e["type"], e["object"].metadata.name) for e in events] == [("ADDED", "a")]


def test_bookmarks_arrive_and_timeout_ends_the_stream(fake: FakeKubernetes, core: client.CoreV1Api) -> None:
    fake.apply("Service", make_service("a"))
    rv = fake.resource_version
    started = time.monotonic()
    events = collect(core.list_namespaced_service, "default", resource_version=rv, allow_watch_bookmarks=True,
                     timeout_seconds=1)
    assert 0.9 < time.monotonic() - started < 5
    bookmarks = [e for e in events if e["type"] == "BOOKMARK"]
    assert len(bookmarks) >= 3 and len(bookmarks) == len(events)
    assert bookmarks[-1]["raw_object"] == {"kind": "Service", "apiVersion": "v1", "metadata": {"resourceVersion": rv}}
    quiet = collect(core.list_namespaced_service, "default", resource_version=rv, timeout_seconds=1)
    assert quiet == []  # no bookmarks unless asked for


def test_watch_from_compacted_resource_version_raises_410(fake: FakeKubernetes, core: client.CoreV1Api) -> None:
    rv = core.list_namespaced_service("default").metadata.resource_version
    fake.apply("Service", make_service("a"))
    fake.compact()
    with pytest.raises(ApiException) as gone:
        collect(core.list_namespaced_service, "default", resource_version=rv, timeout_seconds=5)
    assert gone.value.status == 410 and "Expired" in gone.value.reason
    with pytest.raises(ApiException) as gone:  # without timeout_seconds, Watch retries once, then raises
        collect(core.list_namespaced_service, "default", resource_version=rv)
    assert gone.value.status == 410
    rv = fake.resource_version  # a watch from a version after the compaction is fine
    fake.apply("Service", make_service("b"))
    events = collect(core.list_namespaced_service, "default", resource_version=rv, timeout_seconds=1)
    assert [(e["type"], e["object"].metadata.name) for e in events] == [("ADDED", "b")]


def test_bounded_history_expires_old_resource_versions(core: client.CoreV1Api, tmp_path: Path) -> None:
    with FakeKubernetes(history=3) as small:
        api = client.CoreV1Api(small.api_client())
        first = small.apply("Service", make_service("s0"))["metadata"]["resourceVersion"]
        for i in range(1, 5):
            small.apply("Service", make_service(f"s{i}"))
        with pytest.raises(ApiException) as gone:
            collect(api.list_namespaced_service, "default", resource_version=first, timeout_seconds=1)
        assert gone.value.status == 410
        recent = collect(api.list_namespaced_service, "default", resource_version=str(int(first) + 1),
                         timeout_seconds=1)
        assert [e["object"].metadata.name for e in recent] == ["s2", "s3", "s4"]


def test_resumed_watch_after_close_and_compact_gets_410(fake: FakeKubernetes, core: client.CoreV1Api) -> None:
    fake.apply("Service", make_service("a"))
    seen: list[str] = []

    def agent() -> None:
        w = watch.Watch()
        try:
            for event in w.stream(core.list_namespaced_service, "default"):
                seen.append(event["type"])
        except ApiException as exc:
            seen.append(str(exc.status))

    thread = threading.Thread(target=agent, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while not seen and time.monotonic() < deadline:
        time.sleep(0.02)
    fake.apply("Service", make_service("b"))
    fake.compact()
    fake.close_watches()
    thread.join(timeout=5)
    assert seen == ["ADDED", "ADDED", "410"]
    assert fake.watchers() == 0


def test_status_subresource_writes_only_status(fake: FakeKubernetes, core: client.CoreV1Api) -> None:
    body = make_service("a", ports=[80])
    body["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.9"}]}}
    created = core.create_namespaced_service("default", body)
    assert not (created.status and created.status.load_balancer and created.status.load_balancer.ingress)
    assert created.metadata.generation == 1

    core.patch_namespaced_service_status("a", "default", {
        "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}, "spec": {"type": "ClusterIP"}})
    stored = fake.get("Service", "default", "a")
    assert stored["status"] == {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}
    assert stored["spec"]["type"] == "LoadBalancer" and stored["metadata"]["generation"] == 1

    current = core.read_namespaced_service("a", "default")
    current.spec.ports[0].port = 8080
    current.status.load_balancer.ingress[0].ip = "203.0.113.1"
    replaced = core.replace_namespaced_service("a", "default", current)
    assert replaced.spec.ports[0].port == 8080 and replaced.metadata.generation == 2
    assert replaced.status.load_balancer.ingress[0].ip == "192.0.2.1"
    core.patch_namespaced_service("a", "default", {"status": {"loadBalancer": {}}})
    assert fake.get("Service", "default", "a")["status"]["loadBalancer"]["ingress"][0]["ip"] == "192.0.2.1"

    current = core.read_namespaced_service_status("a", "default")
    current.status.load_balancer.ingress[0].ip = "198.51.100.7"
    current.spec.ports[0].port = 9090
    core.replace_namespaced_service_status("a", "default", current)
    stored = fake.get("Service", "default", "a")
    assert stored["status"]["loadBalancer"]["ingress"] == [{"ip": "198.51.100.7"}]
    assert stored["spec"]["ports"][0]["port"] == 8080


def test_lease_optimistic_concurrency(fake: FakeKubernetes, coordination: client.CoordinationV1Api) -> None:
    lease = client.V1Lease(metadata=client.V1ObjectMeta(name="leader", namespace="tandem"),
                           spec=client.V1LeaseSpec(holder_identity="agent-1", lease_duration_seconds=15))
    created = coordination.create_namespaced_lease("tandem", lease)
    with pytest.raises(ApiException) as exists:
        coordination.create_namespaced_lease("tandem", lease)
    assert exists.value.status == 409 and reason(exists.value) == "AlreadyExists"

    stale = coordination.read_namespaced_lease("leader", "tandem")
    fresh = coordination.read_namespaced_lease("leader", "tandem")
    fresh.spec.holder_identity = "agent-2"
    updated = coordination.replace_namespaced_lease("leader", "tandem", fresh)
    assert updated.spec.holder_identity == "agent-2"
    assert int(updated.metadata.resource_version) > int(created.metadata.resource_version)
    assert updated.metadata.uid == created.metadata.uid

    stale.spec.holder_identity = "agent-3"
    with pytest.raises(ApiException) as conflict:
        coordination.replace_namespaced_lease("leader", "tandem", stale)
    assert conflict.value.status == 409
    status = json.loads(conflict.value.body)
    assert (status["kind"], status["reason"], status["code"]) == ("Status", "Conflict", 409)
    assert fake.get("Lease", "tandem", "leader")["spec"]["holderIdentity"] == "agent-2"

    assert [x.metadata.name for x in coordination.list_namespaced_lease("tandem").items] == ["leader"]
    coordination.delete_namespaced_lease("leader", "tandem")
    with pytest.raises(ApiException) as missing:
        coordination.read_namespaced_lease("leader", "tandem")
    assert missing.value.status == 404 and reason(missing.value) == "NotFound"


def test_events_created_by_the_client_are_listed(fake: FakeKubernetes, api: client.ApiClient,
                                                 core: client.CoreV1Api) -> None:
    ref = client.V1ObjectReference(kind="Service", namespace="default", name="a")
    core.create_namespaced_event("default", client.CoreV1Event(
        metadata=client.V1ObjectMeta(generate_name="a."), involved_object=ref, reason="IPAllocated",
        message="192.0.2.1", type="Normal"))
    client.EventsV1Api(api).create_namespaced_event("default", client.EventsV1Event(
        metadata=client.V1ObjectMeta(name="a.2"), event_time=datetime.now(UTC), regarding=ref, reason="Synced",
        note="done", type="Normal", action="Sync", reporting_controller="tandem", reporting_instance="x"))
    listed = core.list_namespaced_event("default").items
    assert [(e.reason, e.message) for e in listed] == [("IPAllocated", "192.0.2.1")]
    assert listed[0].metadata.name.startswith("a.")
    assert [e.get("reason") for e in fake.events("default")] == ["IPAllocated", "Synced"]
    assert fake.events("other") == []


def test_label_and_field_selectors_on_endpointslices(fake: FakeKubernetes, discovery: client.DiscoveryV1Api) -> None:
    fake.apply("EndpointSlice", make_endpoint_slice("a", ["10.0.0.1"], name="a-1"))
    fake.apply("EndpointSlice", make_endpoint_slice("a", ["10.0.0.2"], name="a-2"))
    fake.apply("EndpointSlice", make_endpoint_slice("b", ["10.0.0.3"], name="b-1"))

    def names(**kwargs: str) -> list[str]:
        return [s.metadata.name for s in discovery.list_namespaced_endpoint_slice("default", **kwargs).items]

    assert names(label_selector=f"{SERVICE_NAME}=a") == ["a-1", "a-2"]
    assert names(label_selector=f"{SERVICE_NAME}!=a") == ["b-1"]
    assert names(label_selector=SERVICE_NAME) == ["a-1", "a-2", "b-1"]
    assert names(label_selector=f"!{SERVICE_NAME}") == []
    assert names(field_selector="metadata.name=a-2") == ["a-2"]
    with pytest.raises(ApiException) as bad:
        names(label_selector=f"{SERVICE_NAME} in (a,b)")
    assert bad.value.status == 400

    rv = fake.resource_version
    fake.apply("EndpointSlice", make_endpoint_slice("b", ["10.0.0.4"], name="b-1"))
    fake.apply("EndpointSlice", make_endpoint_slice("b", ["10.0.0.5"], name="a-2"))  # a-2 moves to service b
    fake.apply("EndpointSlice", make_endpoint_slice("a", ["10.0.0.6"], name="b-1"))  # b-1 moves to service a
    events = collect(discovery.list_namespaced_endpoint_slice, "default", label_selector=f"{SERVICE_NAME}=a",
                     resource_version=rv, timeout_seconds=1)
    assert [(e["type"], e["object"].metadata.name) for e in events] == [("DELETED", "a-2"), ("ADDED", "b-1")]


def test_request_counters(fake: FakeKubernetes, core: client.CoreV1Api) -> None:
    core.list_service_for_all_namespaces()
    core.list_namespaced_service("default")
    collect(core.list_namespaced_service, "default", timeout_seconds=1)
    core.create_namespaced_service("default", make_service("a"))
    core.patch_namespaced_service_status("a", "default", {"status": {"loadBalancer": {}}})
    assert fake.count("list", "services") == 2
    assert fake.count("watch") == 1
    assert fake.requests[("patch", "services/status")] == 1
    assert fake.count() == 5
    fake.reset_counts()
    assert fake.count() == 0


def test_unauthorized_without_token(fake: FakeKubernetes) -> None:
    for key in ({}, {"authorization": "Bearer wrong"}):
        anonymous = client.CoreV1Api(client.ApiClient(client.Configuration(host=fake.url, api_key=key)))
        with pytest.raises(ApiException) as denied:
            anonymous.list_service_for_all_namespaces()
        assert denied.value.status == 401 and reason(denied.value) == "Unauthorized"
    assert fake.count() == 0


def test_errors_are_status_objects(fake: FakeKubernetes, api: client.ApiClient, core: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_service("nope", "default")
    assert missing.value.status == 404 and json.loads(missing.value.body)["details"]["kind"] == "services"
    with pytest.raises(ApiException) as invalid:
        core.create_namespaced_service("default", {"metadata": {}, "spec": {}})
    assert invalid.value.status == 422 and reason(invalid.value) == "Invalid"
    response = api.rest_client.request("PUT", f"{fake.url}/api/v1/namespaces/default/services",
                                       headers={"Authorization": f"Bearer {fake.token}"}, body={})
    assert response.status == 405 and json.loads(response.read())["reason"] == "MethodNotAllowed"


def test_json_patch_and_no_op_writes(fake: FakeKubernetes, core: client.CoreV1Api) -> None:
    rv = fake.apply("Service", make_service("a", annotations={"k": "v"}))["metadata"]["resourceVersion"]
    fake.apply("Service", make_service("a", annotations={"k": "v"}))  # unchanged: no new version
    assert fake.get("Service", "default", "a")["metadata"]["resourceVersion"] == rv
    core.patch_namespaced_service("a", "default", [{"op": "replace", "path": "/metadata/annotations/k", "value": "w"},
                                                   {"op": "add", "path": "/spec/ports/-", "value": {"port": 81}}])
    stored = fake.get("Service", "default", "a")
    assert stored["metadata"]["annotations"] == {"k": "w"} and stored["spec"]["ports"][-1] == {"port": 81}
    assert core.delete_namespaced_service("a", "default").metadata.name == "a"
    assert fake.list("Service") == []


def test_client_informer_relists_after_410(fake: FakeKubernetes, core: client.CoreV1Api) -> None:
    fake.apply("Service", make_service("a"))
    informer = SharedInformer(core.list_namespaced_service, namespace="default")
    informer.start()
    try:
        def names() -> list[str]:
            return sorted(s.metadata.name for s in informer.cache.list())

        wait_until(lambda: names() == ["a"] and fake.watchers("Service") == 1, 5, "the informer's first list",
                   interval=0.02, retry=())
        fake.compact()
        fake.close_watches()  # the informer resumes from its last version, gets 410 and lists again
        wait_until(lambda: fake.count("list") == 2 and fake.watchers("Service") == 1, 5, "the list after the 410",
                   interval=0.02, retry=())
        fake.apply("Service", make_service("b"))
        wait_until(lambda: names() == ["a", "b"], 5, "service b in the informer's cache", interval=0.02, retry=())
        assert fake.count("list", "services") == 2
    finally:
        informer.stop()


def test_nodes_are_cluster_scoped(fake: FakeKubernetes, core: client.CoreV1Api) -> None:
    fake.apply("nodes", make_node("node-1", "192.0.2.1"))
    created = core.create_node(client.V1Node(metadata=client.V1ObjectMeta(name="node-2")))
    assert created.metadata.namespace is None
    listing = core.list_node()
    assert [n.metadata.name for n in listing.items] == ["node-1", "node-2"]
    assert listing.items[0].status.addresses[0].address == "192.0.2.1"
    stream = watch.Watch().stream(core.list_node, resource_version=listing.metadata.resource_version,
                                  timeout_seconds=2)
    fake.apply("nodes", make_node("node-1", "192.0.2.1", ready=False))
    event = next(stream)
    assert event["type"] == "MODIFIED" and event["object"].status.conditions[0].status == "False"
    assert fake.get("nodes", "", "node-2") is not None
    namespaced = httpx.get(f"{fake.url}/api/v1/namespaces/default/nodes",
                           headers={"Authorization": f"Bearer {fake.token}"})
    assert namespaced.status_code == 404
