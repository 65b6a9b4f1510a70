"""`POST /api/batch`: changes to configuration objects applied in one transaction, all or none."""

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError

from tandem.api.deps import DeviceDep, PrincipalDep
from tandem.api.responses import JSON
from tandem.api.routes_config import require_write
from tandem.config.batches import InvalidBatch
from tandem.errors import ApiError
from tandem.models.batch import BatchRequest, BatchResult
from tandem.models.resources import CONFIG_MODELS

router = APIRouter(prefix="/api/batch", tags=["batch"])

BODY = {"requestBody": {"required": True,
                        "content": {"application/json": {"schema": BatchRequest.model_json_schema()}}}}
"""The body, as documented: it is parsed in the batch worker process, not by the framework."""


@router.post("", response_model=BatchResult, openapi_extra=BODY,
             summary="Apply create/replace/update/delete operations atomically")
async def batch(request: Request, device: DeviceDep, principal: PrincipalDep) -> JSON:
    def check(touched: list[tuple[str, str | None]]) -> None:
        for index, (resource, partition) in enumerate(touched):
            try:
                require_write(principal, CONFIG_MODELS[resource], partition)
            except ApiError as error:
                raise type(error)(f"operation {index}: {error.message}", target=f"operations.{index}") from None

    try:
        applied, commit = await device.batches.apply(await request.body(), check)
    except InvalidBatch as invalid:
        raise RequestValidationError([{**d, "loc": ("body", *d["loc"])} for d in invalid.details]) from None
    return JSON({"applied": applied, "commit": commit})
