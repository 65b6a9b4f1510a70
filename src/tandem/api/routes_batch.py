"""`POST /api/batch`: changes to configuration objects applied in one transaction, all or none."""

from fastapi import APIRouter

from tandem.api.deps import DeviceDep, PrincipalDep
from tandem.api.responses import JSON
from tandem.api.routes_config import require_write
from tandem.errors import ApiError
from tandem.models.batch import BatchRequest, BatchResult

router = APIRouter(prefix="/api/batch", tags=["batch"])


@router.post("", response_model=BatchResult, summary="Apply create/replace/update/delete operations atomically")
async def batch(body: BatchRequest, device: DeviceDep, principal: PrincipalDep) -> JSON:
    for index, operation in enumerate(body.operations):
        try:
            require_write(principal, operation.model, operation.object_identity().get("partition"))
        except ApiError as error:
            raise type(error)(f"operation {index}: {error.message}", target=f"operations.{index}") from None
    commit = device.config.apply_batch(body.operations)
    return JSON({"applied": len(body.operations), "commit": commit})
