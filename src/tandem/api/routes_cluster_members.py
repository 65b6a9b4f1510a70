"""Routes of the cluster's membership view (LXD style): /api/cluster and /api/cluster/members[/{name}]."""

from typing import Annotated

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict

from tandem.api.collections import QUERIED, Page, paged
from tandem.api.deps import DeviceDep, PrincipalDep
from tandem.api.responses import JSON
from tandem.cluster.members import FIELDS
from tandem.models.cluster import ClusterMemberView, ClusterView
from tandem.models.fields import NAME_PATTERN, Name

NamePath = Annotated[str, Path(pattern=NAME_PATTERN)]

router = APIRouter(prefix="/api/cluster", tags=["cluster"])


class ClusterUpdate(BaseModel):
    """What `PATCH /api/cluster` may change."""

    model_config = ConfigDict(extra="forbid")

    cluster_name: Name | None = None


@router.get("", response_model=ClusterView,
            summary="The cluster: this member's name, whether it is clustered, what a new member supplies")
async def cluster(device: DeviceDep, _: PrincipalDep) -> JSON:
    return JSON(device.members.cluster().model_dump())


@router.patch("", response_model=ClusterView, summary="Name the cluster")
async def update_cluster(body: ClusterUpdate, device: DeviceDep, principal: PrincipalDep) -> JSON:
    principal.require_admin()
    if body.cluster_name is not None:
        device.members.rename(body.cluster_name)
    return JSON(device.members.cluster().model_dump())


@router.get("/members", response_model=Page, responses=QUERIED, summary="The cluster's members and their status")
async def list_members(request: Request, device: DeviceDep, _: PrincipalDep) -> JSON:
    return paged(request, [view.model_dump() for view in device.members.views()], FIELDS, key="server_name")


@router.get("/members/{name}", response_model=ClusterMemberView, summary="One member and its status")
async def read_member(name: NamePath, device: DeviceDep, _: PrincipalDep) -> JSON:
    return JSON(device.members.view(name).model_dump())


@router.post("/members/{name}/evacuate", response_model=ClusterMemberView,
             summary="Hand a member's traffic groups to the others; it takes none")
async def evacuate(name: NamePath, device: DeviceDep, principal: PrincipalDep) -> JSON:
    principal.require_admin()
    return JSON((await device.members.evacuate(name)).model_dump())


@router.post("/members/{name}/restore", response_model=ClusterMemberView,
             summary="Let an evacuated member take traffic groups again")
async def restore(name: NamePath, device: DeviceDep, principal: PrincipalDep) -> JSON:
    principal.require_admin()
    return JSON((await device.members.restore(name)).model_dump())
