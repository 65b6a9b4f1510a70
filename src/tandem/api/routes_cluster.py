"""Routes of the trust domain and the device groups (admins only; reads for every role)."""

from typing import Annotated

from fastapi import APIRouter, Path, Request

from tandem.api.collections import QUERIED, Page, paged
from tandem.api.deps import DeviceDep, PrincipalDep
from tandem.api.jobs import job_response
from tandem.api.openapi import errors
from tandem.api.responses import JSON
from tandem.cluster.devices import FIELDS as DEVICE_FIELDS
from tandem.models import Job
from tandem.models.cluster import (
    DeviceGroup,
    GroupStatus,
    JoinRequest,
    TrustedDevice,
    TrustedDeviceView,
    TrustRequest,
)
from tandem.models.fields import NAME_PATTERN
from tandem.models.partial import changes, patch_model
from tandem.sync.groups import SyncRequest

NamePath = Annotated[str, Path(pattern=NAME_PATTERN)]
GROUP_FIELDS = list(DeviceGroup.model_fields)

DeviceGroupPatch = patch_model(DeviceGroup)

router = APIRouter(prefix="/api", tags=["cluster"])


@router.get("/trust", summary="The trust domain: its id and devices")
async def trust(device: DeviceDep, _: PrincipalDep) -> JSON:
    return JSON({"domain_id": device.trust.domain_id, "devices": [d.model_dump() for d in device.trust.views()]})


@router.get("/trust/devices", response_model=Page, responses=QUERIED, summary="The trusted devices")
async def trusted_devices(request: Request, device: DeviceDep, _: PrincipalDep) -> JSON:
    return paged(request, [d.model_dump() for d in device.trust.views()], DEVICE_FIELDS)


@router.get("/trust/devices/{name}", response_model=TrustedDeviceView, summary="One trusted device")
async def trusted_device(name: NamePath, device: DeviceDep, _: PrincipalDep) -> JSON:
    return JSON(device.trust.view(name).model_dump())


@router.post("/trust/devices", status_code=201, response_model=TrustedDeviceView, responses=errors(502),
             summary="Add a device to the trust domain")
async def add_device(body: TrustRequest, device: DeviceDep, principal: PrincipalDep) -> JSON:
    principal.require_admin()
    view = await device.trust.add(body)
    return JSON(view.model_dump(), status_code=201, headers={"Location": f"/api/trust/devices/{view.name}"})


@router.delete("/trust/devices/{name}", status_code=204, summary="Remove a device from the trust domain")
async def remove_device(name: NamePath, device: DeviceDep, principal: PrincipalDep) -> None:
    principal.require_admin()
    device.trust.remove(name)


@router.post("/trust/join", response_model=TrustedDevice,
             summary="Join the trust domain of the member calling (device to device)")
async def join(body: JoinRequest, device: DeviceDep, principal: PrincipalDep) -> JSON:
    principal.require_admin()
    return JSON(device.trust.join(body).model_dump())


@router.get("/device-groups", response_model=Page, responses=QUERIED, summary="List device groups")
async def list_groups(request: Request, device: DeviceDep, _: PrincipalDep) -> JSON:
    return paged(request, [g.public().model_dump() for g in device.groups.all()], GROUP_FIELDS)


@router.post("/device-groups", status_code=201, response_model=DeviceGroup, summary="Create a device group")
async def create_group(body: DeviceGroup, device: DeviceDep, principal: PrincipalDep) -> JSON:
    principal.require_admin()
    group = device.groups.create(body).public()
    return JSON(group.model_dump(), status_code=201, headers={"Location": f"/api/device-groups/{group.name}"})


@router.get("/device-groups/{name}", response_model=DeviceGroup, summary="Read a device group")
async def read_group(name: NamePath, device: DeviceDep, _: PrincipalDep) -> JSON:
    return JSON(device.groups.get(name).public().model_dump())


@router.patch("/device-groups/{name}", response_model=DeviceGroup, summary="Change a device group")
async def update_group(name: NamePath, body: DeviceGroupPatch, device: DeviceDep,  # type: ignore[valid-type]
                       principal: PrincipalDep) -> JSON:
    principal.require_admin()
    return JSON(device.groups.update(name, changes(body)).public().model_dump())


@router.delete("/device-groups/{name}", status_code=204, summary="Delete a device group")
async def delete_group(name: NamePath, device: DeviceDep, principal: PrincipalDep) -> None:
    principal.require_admin()
    device.groups.delete(name)


@router.get("/device-groups/{name}/status", response_model=GroupStatus, summary="Sync status of a device group")
async def status(name: NamePath, device: DeviceDep, _: PrincipalDep) -> JSON:
    return JSON(device.groups.status(name).model_dump())


@router.post("/device-groups/{name}/sync", status_code=202, response_model=Job,
             summary="Sync from one device to the group (a job)")
async def sync(name: NamePath, body: SyncRequest, device: DeviceDep, principal: PrincipalDep) -> JSON:
    principal.require_admin()
    job = device.jobs.start(f"sync device group {name} from {body.from_}", device.groups.sync_work(name, body.from_))
    return job_response(job)


@router.delete("/device-groups/{name}/conflicts", status_code=204, summary="Clear the conflict records")
async def clear_conflicts(name: NamePath, device: DeviceDep, principal: PrincipalDep) -> None:
    principal.require_admin()
    await device.groups.clear_conflicts(name)
