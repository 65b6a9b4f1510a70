"""The Kubernetes source: what the agent serves of a cluster, followed by list-then-watch with resource
versions: LoadBalancer Services of its class (`k8s_services`), Ingresses of its IngressClasses
(`k8s_ingress`), Gateways of its GatewayClasses and their HTTPRoutes (`k8s_gateway`), with what they refer
to (EndpointSlices, Nodes, TLS Secrets). What is known and built is `k8s_state`'s; what is written back
is `k8s_status`'s.

Each resource is listed once, then watched from the list's resourceVersion (bookmarks keep it fresh);
a watch that ends is started again from where it was, and only a `410 Gone` (or an error) makes the
source list again. Nothing is polled. A resource the API server does not serve (404: the Gateway API's
CRDs are not installed) is asked for again now and then.
"""

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson

from tandem.agents.metrics import Metrics
from tandem.agents.service import Report, Service
from tandem.agents.sources.k8s_gateway import GROUP
from tandem.agents.sources.k8s_ingress import TLS_SECRET
from tandem.agents.sources.k8s_services import Selection
from tandem.agents.sources.k8s_state import ClusterState
from tandem.agents.sources.k8s_status import StatusWriter

log = logging.getLogger("tandem.agent.kubernetes")
WATCH_SECONDS = 300
RETRY = 1.0
ABSENT_RETRY = 30.0
"""Seconds before asking again for a resource the API server does not serve."""


class KubernetesSource:
    """Services wanted by a Kubernetes cluster, kept up to date by watches."""

    kind = "kubernetes"

    def __init__(self, api_client: Any, metrics: Metrics, selection: Selection = Selection(),
                 member_mode: str = "endpoints") -> None:
        self._selection = selection
        self._client = api_client
        self._metrics = metrics
        self._state = ClusterState(selection, member_mode)
        self._status = StatusWriter(api_client, self._state)
        self._stopping = threading.Event()

    @property
    def services(self) -> dict[str, Service]:
        return self._state.services

    def take_changed(self) -> set[str] | None:
        """The keys of the services changed since the last call (None: any may have, after a list)."""
        return self._state.take_changed()

    @property
    def errors(self) -> dict[str, str]:
        """Why services are not served as they are now, by key."""
        return self._state.errors

    @property
    def present(self) -> set[str]:
        """Every service for Tandem in the cluster (those with a problem too: their objects stay)."""
        return self._state.present

    # -- following the cluster -----------------------------------------------------------------------

    def _follows(self) -> list[tuple[str, str | None, Callable[..., Any]]]:
        """(resource, namespace or None for all, the list call that watches it) of everything followed."""
        from kubernetes.client import CoreV1Api, CustomObjectsApi, DiscoveryV1Api, NetworkingV1Api

        core, discovery = CoreV1Api(self._client), DiscoveryV1Api(self._client)
        networking, custom = NetworkingV1Api(self._client), CustomObjectsApi(self._client)
        tls = {"field_selector": f"type={TLS_SECRET}"}
        per_namespace = (
            ("services", core.list_namespaced_service, core.list_service_for_all_namespaces, {}),
            ("endpointslices", discovery.list_namespaced_endpoint_slice,
             discovery.list_endpoint_slice_for_all_namespaces, {}),
            ("ingresses", networking.list_namespaced_ingress, networking.list_ingress_for_all_namespaces, {}),
            ("secrets", core.list_namespaced_secret, core.list_secret_for_all_namespaces, tls),
            ("gateways", functools.partial(custom.list_namespaced_custom_object, GROUP, "v1", plural="gateways"),
             functools.partial(custom.list_cluster_custom_object, GROUP, "v1", "gateways"), {}),
            ("httproutes", functools.partial(custom.list_namespaced_custom_object, GROUP, "v1", plural="httproutes"),
             functools.partial(custom.list_cluster_custom_object, GROUP, "v1", "httproutes"), {}))
        if self._selection.namespaces:
            follows = [(resource, namespace, functools.partial(namespaced, namespace=namespace, **extra))
                       for namespace in self._selection.namespaces
                       for resource, namespaced, _, extra in per_namespace]
        else:
            follows = [(resource, None, functools.partial(everywhere, **extra))
                       for resource, _, everywhere, extra in per_namespace]
        classes = functools.partial(custom.list_cluster_custom_object, GROUP, "v1", "gatewayclasses")
        return [*follows, ("nodes", None, core.list_node), ("ingressclasses", None, networking.list_ingress_class),
                ("gatewayclasses", None, classes)]

    async def run(self, changed: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()

        def notify() -> None:
            loop.call_soon_threadsafe(changed.set)

        for resource, namespace, call in self._follows():
            threading.Thread(target=self._follow, args=(resource, namespace, call, notify),
                             name=f"watch-{resource}-{namespace or 'all'}", daemon=True).start()
        try:
            await asyncio.Event().wait()  # the watches run in their threads until the agent stops
        finally:
            self._stopping.set()

    def _follow(self, resource: str, namespace: str | None, call: Callable[..., Any],
                notify: Callable[[], None]) -> None:
        """List then watch `resource` (in `namespace`, or all) until the agent stops."""
        from kubernetes import watch
        from kubernetes.client import ApiException

        while not self._stopping.is_set():
            try:
                listing = orjson.loads(call(_preload_content=False).data)
                version = listing["metadata"]["resourceVersion"]
                self._state.replace(resource, namespace, listing.get("items") or [])
                notify()
                while not self._stopping.is_set():
                    stream = watch.Watch(return_type="object")  # the objects as JSON gives them: no models
                    for event in stream.stream(call, resource_version=version, allow_watch_bookmarks=True,
                                               timeout_seconds=WATCH_SECONDS):
                        if event["type"] == "BOOKMARK":
                            version = event["raw_object"]["metadata"].get("resourceVersion") or version
                            continue
                        self._state.apply(resource, event["type"], event["raw_object"])
                        notify()
                        version = event["raw_object"]["metadata"].get("resourceVersion") or version
            except ApiException as error:
                self._metrics.watch_restarts.labels(resource).inc()
                if error.status == 410:
                    log.info("the watch of %s expired (410 Gone): listing again", resource)
                elif error.status == 404:
                    log.info("the API server does not serve %s: asking again in %.0f s", resource, ABSENT_RETRY)
                    self._stopping.wait(ABSENT_RETRY)
                else:
                    log.warning("watching %s failed (%s): listing again", resource, error.reason)
                    time.sleep(RETRY)
            except Exception as error:  # the API server went away, a connection broke: list again
                self._metrics.watch_restarts.labels(resource).inc()
                log.warning("watching %s failed (%s): listing again", resource, error)
                time.sleep(RETRY)

    # -- telling the cluster ---------------------------------------------------------------------------

    async def report(self, key: str, report: Report) -> None:
        """Write the address to the status of what the service comes from, or explain with an Event why it
        is not served; warnings are Events on the objects they concern."""
        await asyncio.to_thread(self._status.report, key, report)
