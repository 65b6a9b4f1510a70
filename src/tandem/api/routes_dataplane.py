"""Routes of the data plane: what this device serves now, with counters and member health."""

from typing import Annotated

from fastapi import APIRouter, Path

from tandem.api.deps import DeviceDep, PrincipalDep
from tandem.api.openapi import errors
from tandem.api.responses import JSON
from tandem.dataplane.service import ServingStatus
from tandem.models.fields import NAME_PATTERN

NamePath = Annotated[str, Path(pattern=NAME_PATTERN)]

router = APIRouter(prefix="/api", tags=["dataplane"])


@router.get("/dataplane", response_model=ServingStatus, responses=errors(503),
            summary="What this device serves: addresses, virtual servers, pools, counters")
async def dataplane(device: DeviceDep, _: PrincipalDep) -> JSON:
    return JSON(await device.dataplane.status())


@router.get("/virtuals/{partition}/{name}/stats", responses=errors(503),
            summary="Counters of a virtual server served here")
async def virtual_stats(partition: NamePath, name: NamePath, device: DeviceDep, _: PrincipalDep) -> JSON:
    return JSON(await device.dataplane.virtual_stats(partition, name))


@router.get("/pools/{partition}/{name}/stats", responses=errors(503),
            summary="Member health and counters of a pool served here")
async def pool_stats(partition: NamePath, name: NamePath, device: DeviceDep, _: PrincipalDep) -> JSON:
    return JSON(await device.dataplane.pool_stats(partition, name))
