"""`GET /metrics`: the device in Prometheus's text format, for a scraper that authenticates as any caller does (a
Bearer token, or Basic credentials: say an `auditor` user kept for it). Gathered at each scrape from what the
API shows elsewhere: sync per group member (`/api/device-groups/{name}/status`), heartbeats and each heartbeat
path, traffic groups (`/api/failover/status`), failover transitions (the event journal), the data plane's
counters per virtual server and member (`/api/dataplane`); and the API's own request latency by route, method
and status (`RequestTimes`)."""

import asyncio
import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from starlette.types import ASGIApp, Receive, Scope, Send

from tandem.api.asgi import StatusSeen
from tandem.device import Device
from tandem.errors import ApiError
from tandem.failover.status import FailoverStatus
from tandem.models.cluster import IN_SYNC, GroupStatus

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
HEARTBEAT_COUNTERS = ("sent", "received", "forged", "replayed", "stale", "malformed", "late")


class RequestMetrics:
    """The API's request latency histogram, in a registry of the device's own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram("tandem_api_request_seconds", "API requests by route, method and status",
                                 ["route", "method", "status"], buckets=LATENCY_BUCKETS, registry=self.registry)


class RequestTimes:
    """ASGI middleware: each request's time to its answer's end, by route (the path template, `unmatched` for a
    path no route takes), method and status."""

    def __init__(self, app: ASGIApp, metrics: RequestMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, seen = time.perf_counter(), StatusSeen(send)
        try:
            await self.app(scope, receive, seen)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.latency.labels(route, scope["method"], str(seen.status)).observe(
                time.perf_counter() - started)


def _gauge(name: str, help_text: str, labels: list[str], samples: Iterable[tuple[list[str], float]]) -> Metric:
    family = GaugeMetricFamily(name, help_text, labels=labels)
    for values, value in samples:
        family.add_metric(values, value)
    return family


def _counter(name: str, help_text: str, labels: list[str], samples: Iterable[tuple[list[str], float]]) -> Metric:
    family = CounterMetricFamily(name, help_text, labels=labels)
    for values, value in samples:
        family.add_metric(values, value)
    return family


def sync_metrics(statuses: list[GroupStatus]) -> list[Metric]:
    members = [(status.name, member) for status in statuses for member in status.members]
    return [
        _gauge("tandem_sync_in_sync", "1 when the member is In Sync, as this device sees it", ["group", "member"],
               ([[g, m.name], float(m.status == IN_SYNC)] for g, m in members)),
        _gauge("tandem_sync_connected", "1 when this device has a peer link to the member", ["group", "member"],
               ([[g, m.name], float(m.connected)] for g, m in members)),
        _gauge("tandem_sync_pending_changes", "Commits the member has not acknowledged (its lag)",
               ["group", "member"], ([[g, m.name], m.pending_changes] for g, m in members)),
        _gauge("tandem_sync_last_exchange_seconds", "Seconds since the member last sent its status",
               ["group", "member"],
               ([[g, m.name], m.last_exchange] for g, m in members if m.last_exchange is not None)),
        _counter("tandem_sync_commits", "Commits of each origin the member has (the origin's sequence number)",
                 ["group", "member", "origin"],
                 ([[g, m.name, origin], seq] for g, m in members for origin, seq in m.last_commit.items())),
        _gauge("tandem_sync_conflicts", "Conflict records and broken rules of the group", ["group"],
               ([[status.name], len(status.conflicts)] for status in statuses)),
    ]


def failover_metrics(status: FailoverStatus, transitions: dict[tuple[str, str], int]) -> list[Metric]:
    beat: dict[str, Any] = status.heartbeat
    peers: dict[str, Any] = beat.get("peers") or {}
    paths = [(peer, index, path) for peer, report in peers.items() for index, path in enumerate(report["paths"])]
    return [
        _counter("tandem_heartbeats", "Heartbeats of this device: sent, and received by what became of them",
                 ["kind"], ([[kind], beat[kind]] for kind in HEARTBEAT_COUNTERS if kind in beat)),
        _counter("tandem_heartbeat_path_received", "Heartbeats received from a member on one path",
                 ["peer", "path", "address"], ([[peer, str(i), p["address"]], p["received"]] for peer, i, p in paths)),
        _gauge("tandem_heartbeat_path_up", "1 while a member's heartbeats come on the path",
               ["peer", "path", "address"], ([[peer, str(i), p["address"]], float(p["up"])] for peer, i, p in paths)),
        _gauge("tandem_heartbeat_deadline_seconds", "The silence a member is allowed now", ["peer"],
               ([[peer], report["deadline_s"]] for peer, report in peers.items())),
        _gauge("tandem_traffic_group_active", "1 while this device is active for the traffic group",
               ["traffic_group"], ([[t.name], float(t.state == "active")] for t in status.traffic_groups)),
        _gauge("tandem_traffic_group_score", "This device's score for the traffic group", ["traffic_group"],
               ([[t.name], m.score] for t in status.traffic_groups for m in t.members if m.name == status.device)),
        _gauge("tandem_device_in_service", "1 while this device may take traffic groups", [],
               [([], float(not status.offline))]),
        _counter("tandem_failover_transitions", "Transitions this device recorded, by the state entered",
                 ["traffic_group", "state"],
                 ([[group, state], count] for (group, state), count in transitions.items())),
    ]


def dataplane_metrics(virtuals: dict[str, Any], pools: dict[str, Any]) -> list[Metric]:
    members = [(pool, member, stats) for pool, entries in pools.items() for member, stats in entries.items()]
    out = [_gauge("tandem_virtual_listening", "1 while the virtual server listens here", ["virtual"],
                  ([[key], float(bool(stats.get("listening")))] for key, stats in virtuals.items())),
           _gauge("tandem_member_up", "1 while the pool member is up (as this device's monitor sees it)",
                  ["pool", "member"], ([[pool, member], float(stats.get("health") == "up")]
                                       for pool, member, stats in members))]
    for name, help_text, family in (("connections_total", "Connections accepted", _counter),
                                    ("connections_current", "Connections open", _gauge),
                                    ("bytes_in", "Bytes from clients", _counter),
                                    ("bytes_out", "Bytes to clients", _counter)):
        out.append(family(f"tandem_virtual_{name}", f"{help_text}, by virtual server", ["virtual"],
                          ([[key], stats.get(name, 0)] for key, stats in virtuals.items())))
        out.append(family(f"tandem_member_{name}", f"{help_text}, by pool member", ["pool", "member"],
                          ([[pool, member], stats.get(name, 0)] for pool, member, stats in members)))
    return out


class _Snapshot:
    """A collector of metric families gathered beforehand."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


async def exposition(device: Device, requests: RequestMetrics) -> bytes:
    """The device's metrics, gathered now, in Prometheus's text format."""
    families = sync_metrics([device.groups.status(group.name) for group in device.groups.all()
                             if device.name in group.members])
    presented = device.management_tls.current
    families.append(_gauge("tandem_management_certificate_expiry_timestamp_seconds",
                           "When the certificate the API presents expires (alert on it to renew in time)",
                           ["source", "fingerprint"],
                           [([presented.source, presented.leaf.fingerprint], presented.leaf.not_after.timestamp())]))
    transitions = await asyncio.to_thread(device.failover.transition_counts)  # a count over the whole journal
    families += failover_metrics(device.failover.status(), transitions)
    try:
        served = await device.dataplane.status()
    except ApiError:  # the data plane process is being started again: say so, leave its counters out
        families.append(_gauge("tandem_dataplane_up", "1 while the data plane process answers", [], [([], 0.0)]))
    else:
        families.append(_gauge("tandem_dataplane_up", "1 while the data plane process answers", [], [([], 1.0)]))
        families += dataplane_metrics(served.virtuals, served.pools)
    registry = CollectorRegistry()
    registry.register(_Snapshot(families))
    return generate_latest(registry) + generate_latest(requests.registry)
