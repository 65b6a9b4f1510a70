"""Lease routes: /api/leases[/{partition}/{name}[/acquire|/release]]."""

from typing import Annotated

from fastapi import APIRouter, Path, Request

from tandem.api.collections import QUERIED, Page, page_response, parse_query
from tandem.api.deps import DeviceDep, PrincipalDep
from tandem.api.responses import JSON
from tandem.leases import KNOWN_FIELDS
from tandem.models.fields import NAME_PATTERN
from tandem.models.lease import AcquireRequest, Lease, ReleaseRequest

NamePath = Annotated[str, Path(pattern=NAME_PATTERN)]

router = APIRouter(prefix="/api/leases", tags=["leases"])


@router.get("", response_model=Page, responses=QUERIED,
            summary="List leases (filter with partition=P, holder=H, expired=true...)")
async def list_leases(request: Request, device: DeviceDep, _: PrincipalDep) -> JSON:
    query = parse_query(request, KNOWN_FIELDS)
    records, after = device.leases.page(query)
    return page_response(request, records, after, query.matched)


@router.get("/{partition}/{name}", response_model=Lease, summary="Read a lease")
async def read_lease(partition: NamePath, name: NamePath, device: DeviceDep, _: PrincipalDep) -> JSON:
    return JSON(device.leases.read(partition, name))


@router.post("/{partition}/{name}/acquire", response_model=Lease, summary="Acquire or renew a lease")
async def acquire_lease(partition: NamePath, name: NamePath, body: AcquireRequest, device: DeviceDep,
                        principal: PrincipalDep) -> JSON:
    principal.require_write(partition)
    return JSON(await device.write(device.leases.acquire, partition, name, body))


@router.post("/{partition}/{name}/release", response_model=Lease, summary="Release a lease (its holder only)")
async def release_lease(partition: NamePath, name: NamePath, body: ReleaseRequest, device: DeviceDep,
                        principal: PrincipalDep) -> JSON:
    principal.require_write(partition)
    return JSON(await device.write(device.leases.release, partition, name, body.holder))


@router.delete("/{partition}/{name}", status_code=204, summary="Remove a lease whoever holds it (admins only)")
async def delete_lease(partition: NamePath, name: NamePath, device: DeviceDep, principal: PrincipalDep) -> None:
    principal.require_admin()
    await device.write(device.leases.delete, partition, name)
