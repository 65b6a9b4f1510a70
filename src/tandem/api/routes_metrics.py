"""`GET /metrics`: the device in Prometheus's text format (`api.metrics`)."""

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from tandem.api import metrics
from tandem.api.deps import DeviceDep, PrincipalDep

router = APIRouter(tags=["device"])


@router.get("/metrics", response_class=Response, summary="This device's metrics, in Prometheus's text format",
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "The metrics"}})
async def device_metrics(request: Request, device: DeviceDep, _: PrincipalDep) -> Response:
    body = await metrics.exposition(device, request.app.state.request_metrics)
    return Response(body, media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})
