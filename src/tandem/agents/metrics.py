"""The agent's Prometheus metrics and health probe, served over HTTP (`/metrics`, `/healthz`)."""

import threading
from collections.abc import Callable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse, WSGIEnvironment

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # scrapes are not worth a log line each
        pass


class Metrics:
    """Counters of one agent; `healthy` is what `/healthz` tells (200 or 503)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.reconciles = Counter("tandem_agent_reconciles", "Reconciles run", registry=self.registry)
        self.reconcile_seconds = Histogram("tandem_agent_reconcile_seconds", "Duration of a reconcile",
                                           registry=self.registry,
                                           buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.objects_written = Counter("tandem_agent_objects_written", "Objects created, replaced or deleted",
                                       registry=self.registry)
        self.watch_restarts = Counter("tandem_agent_watch_restarts", "Watches started again (410 Gone, errors)",
                                      ["resource"], registry=self.registry)
        self.errors = Counter("tandem_agent_errors", "Reconciles or writes that failed", registry=self.registry)
        self.services_owned = Gauge("tandem_agent_services_owned", "Services this agent writes",
                                    registry=self.registry)
        self.problems = Gauge("tandem_agent_services_with_problems", "Services not served, with the reason in status",
                              registry=self.registry)
        self.healthy: Callable[[], bool] = lambda: True
        self._server: WSGIServer | None = None

    def _app(self, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
            return [generate_latest(self.registry)]
        if path == "/healthz":
            ok = self.healthy()
            start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"ok\n" if ok else b"not holding its lease\n"]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    def serve(self, host: str, port: int) -> None:
        """Serve `/metrics` and `/healthz` on host:port from a background thread."""
        self._server = make_server(host, port, self._app, handler_class=_Quiet)
        threading.Thread(target=self._server.serve_forever, name="agent-metrics", daemon=True).start()

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
