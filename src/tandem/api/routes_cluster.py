"""Routes of the trust domain and the device groups (admins only; reads for every role)."""

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request

from tandem.api.collections import paged
from tandem.api.deps import DeviceDep, PrincipalDep
from tandem.api.jobs import job_response
from tandem.api.responses import JSON
from tandem.device import Device
from tandem.errors import Conflict, NotFound
from tandem.models.cluster import DeviceGroup, JoinRequest, TrustRequest
from tandem.models.fields import NAME_PATTERN
from tandem.models.partial import changes, patch_model
from tandem.sync import groups
from tandem.sync.status import group_status
from tandem.trust import admission

NamePath = Annotated[str, Path(pattern=NAME_PATTERN)]
DEVICE_FIELDS = ["name", "id", "fingerprint", "management_url", "peer_url", "self", "connected", "message"]
GROUP_FIELDS = list(DeviceGroup.model_fields)

DeviceGroupPatch = patch_model(DeviceGroup)

router = APIRouter(prefix="/api", tags=["cluster"])


def _device_view(device: Device, record: dict[str, Any]) -> dict[str, Any]:
    itself = record["id"] == device.store.device_id
    view = device.sync.peers.get(record["id"])
    connected = None if itself else bool(view and view.connected)
    message = "" if itself else (view.message if view else "no link")
    return {k: record[k] for k in DEVICE_FIELDS[:5]} | {"self": itself, "connected": connected, "message": message}


@router.get("/trust", summary="The trust domain: its id and devices")
async def trust(device: DeviceDep, _: PrincipalDep) -> JSON:
    return JSON({"domain_id": device.domain.domain_id,
                 "devices": [_device_view(device, d) for d in device.domain.devices()]})


@router.get("/trust/devices", summary="The trusted devices")
async def trusted_devices(request: Request, device: DeviceDep, _: PrincipalDep) -> JSON:
    return paged(request, [_device_view(device, d) for d in device.domain.devices()], DEVICE_FIELDS)


@router.get("/trust/devices/{name}", summary="One trusted device")
async def trusted_device(name: NamePath, device: DeviceDep, _: PrincipalDep) -> JSON:
    record = device.domain.device_named(name)
    if record is None:
        raise NotFound(f"no trusted device {name!r}", target=name)
    return JSON(_device_view(device, record))


@router.post("/trust/devices", status_code=201, summary="Add a device to the trust domain")
async def add_device(body: TrustRequest, device: DeviceDep, principal: PrincipalDep) -> JSON:
    principal.require_admin()
    record = await admission.add_device(device.domain, body)
    return JSON(_device_view(device, record), status_code=201,
                headers={"Location": f"/api/trust/devices/{record['name']}"})


@router.delete("/trust/devices/{name}", status_code=204, summary="Remove a device from the trust domain")
async def remove_device(name: NamePath, device: DeviceDep, principal: PrincipalDep) -> None:
    principal.require_admin()
    admission.remove_device(device.domain, name)


@router.post("/trust/join", summary="Join the trust domain of the member calling (device to device)")
async def join(body: JoinRequest, device: DeviceDep, principal: PrincipalDep) -> JSON:
    principal.require_admin()
    return JSON(admission.join(device.domain, body))


@router.get("/device-groups", summary="List device groups")
async def list_groups(request: Request, device: DeviceDep, _: PrincipalDep) -> JSON:
    return paged(request, [groups.present(g) for g in device.domain.groups()], GROUP_FIELDS)


@router.post("/device-groups", status_code=201, response_model=DeviceGroup, summary="Create a device group")
async def create_group(body: DeviceGroup, device: DeviceDep, principal: PrincipalDep) -> JSON:
    principal.require_admin()
    group = groups.create(device.domain, device.store, body)
    return JSON(group, status_code=201, headers={"Location": f"/api/device-groups/{group['name']}"})


@router.get("/device-groups/{name}", response_model=DeviceGroup, summary="Read a device group")
async def read_group(name: NamePath, device: DeviceDep, _: PrincipalDep) -> JSON:
    return JSON(groups.present(groups.get(device.domain, name)))


@router.patch("/device-groups/{name}", response_model=DeviceGroup, summary="Change a device group")
async def update_group(name: NamePath, body: DeviceGroupPatch, device: DeviceDep,  # type: ignore[valid-type]
                       principal: PrincipalDep) -> JSON:
    principal.require_admin()
    return JSON(groups.update(device.domain, device.store, name, changes(body)))


@router.delete("/device-groups/{name}", status_code=204, summary="Delete a device group")
async def delete_group(name: NamePath, device: DeviceDep, principal: PrincipalDep) -> None:
    principal.require_admin()
    groups.delete(device.domain, name)


@router.get("/device-groups/{name}/status", summary="Sync status of a device group")
async def status(name: NamePath, device: DeviceDep, _: PrincipalDep) -> JSON:
    return JSON(group_status(device.sync, groups.get(device.domain, name)))


@router.post("/device-groups/{name}/sync", status_code=202, summary="Sync from one device to the group (a job)")
async def sync(name: NamePath, body: groups.SyncRequest, device: DeviceDep, principal: PrincipalDep) -> JSON:
    principal.require_admin()
    if body.from_ not in groups.get(device.domain, name)["members"]:
        raise Conflict(f"{body.from_} is not a member of device group {name}", target="from")
    job = device.jobs.start(f"sync device group {name} from {body.from_}",
                            lambda: device.sync.sync_to_group(name, body.from_))
    return job_response(job)


@router.delete("/device-groups/{name}/conflicts", status_code=204, summary="Clear the conflict records")
async def clear_conflicts(name: NamePath, device: DeviceDep, principal: PrincipalDep) -> None:
    principal.require_admin()
    groups.get(device.domain, name)
    await device.sync.clear_conflicts(name)
