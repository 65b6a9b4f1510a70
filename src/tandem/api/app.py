"""The FastAPI application of one device."""

from fastapi import FastAPI

from tandem._version import __version__
from tandem.api import (
    errors,
    jobs,
    openapi,
    routes_audit,
    routes_backup,
    routes_batch,
    routes_cluster,
    routes_cluster_members,
    routes_config,
    routes_dataplane,
    routes_device,
    routes_failover,
    routes_leases,
    routes_lxd,
    routes_metrics,
    routes_peering,
    routes_testing,
    routes_users,
)
from tandem.api.audit_trail import AuditWrites
from tandem.api.durability import DurableWrites
from tandem.api.limits import JsonBodies
from tandem.api.metrics import RequestMetrics, RequestTimes
from tandem.api.responses import JSON
from tandem.device import Device


def create_app(device: Device) -> FastAPI:
    """The API of `device`: every route but login and health needs credentials."""
    app = FastAPI(title="Tandem device API", version=__version__, openapi_url=None, docs_url=None, redoc_url=None,
                  default_response_class=JSON)
    app.state.device = device
    app.state.request_metrics = RequestMetrics()
    errors.install(app)
    openapi.install(app)
    app.add_middleware(JsonBodies)
    app.add_middleware(DurableWrites, flush=device.flush)
    app.add_middleware(RequestTimes, metrics=app.state.request_metrics)
    app.add_middleware(AuditWrites, trail=device.audit)
    app.include_router(routes_device.router)
    for router in routes_config.ROUTERS:
        app.include_router(router)
    app.include_router(routes_users.router)
    app.include_router(routes_batch.router)
    app.include_router(routes_leases.router)
    app.include_router(jobs.router)
    app.include_router(jobs.ontap_router)
    app.include_router(routes_cluster.router)
    app.include_router(routes_cluster_members.router)
    app.include_router(routes_lxd.router)
    app.include_router(routes_peering.router)
    app.include_router(routes_failover.router)
    app.include_router(routes_dataplane.router)
    app.include_router(routes_metrics.router)
    app.include_router(routes_audit.router)
    app.include_router(routes_backup.router)
    if routes_testing.enabled():
        app.include_router(routes_testing.router)
    return app
