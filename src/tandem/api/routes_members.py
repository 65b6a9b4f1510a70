"""Routes of a pool's members: /api/pools/{partition}/{pool}/members[/{address}:{port}]."""

import asyncio
from typing import Annotated

from fastapi import APIRouter, Path, Request

from tandem.api.collections import page_response, parse_query, require_filter
from tandem.api.deps import DeviceDep, PrincipalDep
from tandem.api.jobs import counted, job_response
from tandem.api.responses import JSON
from tandem.models import PoolMember
from tandem.models.fields import NAME_PATTERN, member_key
from tandem.models.partial import changes, patch_model

NamePath = Annotated[str, Path(pattern=NAME_PATTERN)]
MemberPath = Annotated[str, Path(max_length=80, description="address:port, IPv6 as [address]:port")]
MemberPatch = patch_model(PoolMember)
KNOWN_FIELDS = list(PoolMember.model_fields)

router = APIRouter(prefix="/api/pools/{partition}/{pool}/members", tags=["members"])


@router.get("", summary="List a pool's members")
async def list_members(request: Request, partition: NamePath, pool: NamePath, device: DeviceDep,
                       _: PrincipalDep) -> JSON:
    records, after = await asyncio.to_thread(device.config.page_members, partition, pool,
                                             parse_query(request, KNOWN_FIELDS))
    return page_response(request, records, after)


@router.post("", status_code=201, response_model=PoolMember, summary="Add a member to a pool")
async def add_member(partition: NamePath, pool: NamePath, body: PoolMember, device: DeviceDep,
                     principal: PrincipalDep) -> JSON:
    principal.require_write(partition)
    stored = await device.write(device.config.create_member, partition, pool, body)
    where = f"/api/pools/{partition}/{pool}/members/{member_key(stored['address'], stored['port'])}"
    return JSON(stored, status_code=201, headers={"Location": where})


@router.patch("", status_code=202, summary="Change every matching member (a job)")
async def patch_members(request: Request, partition: NamePath, pool: NamePath, body: MemberPatch,  # type: ignore[valid-type]
                        device: DeviceDep, principal: PrincipalDep) -> JSON:
    principal.require_write(partition)
    query = parse_query(request, KNOWN_FIELDS)
    require_filter(query)
    patch = changes(body)
    job = device.jobs.start(f"update members of /{partition}/{pool} matching {query.filters}", lambda: counted(
        device, device.config.update_matching_members, partition, pool, query, patch))
    return job_response(job)


@router.delete("", status_code=202, summary="Remove every matching member (a job)")
async def delete_members(request: Request, partition: NamePath, pool: NamePath, device: DeviceDep,
                         principal: PrincipalDep) -> JSON:
    principal.require_write(partition)
    query = parse_query(request, KNOWN_FIELDS)
    require_filter(query)
    job = device.jobs.start(f"delete members of /{partition}/{pool} matching {query.filters}",
                            lambda: counted(device, device.config.delete_matching_members, partition, pool, query))
    return job_response(job)


@router.get("/{member}", response_model=PoolMember, summary="Read one member")
async def read_member(partition: NamePath, pool: NamePath, member: MemberPath, device: DeviceDep,
                      _: PrincipalDep) -> JSON:
    return JSON(device.config.read_member(partition, pool, member))


@router.patch("/{member}", response_model=PoolMember, summary="Change one member (e.g. enable or disable it)")
async def update_member(partition: NamePath, pool: NamePath, member: MemberPath, body: MemberPatch,  # type: ignore[valid-type]
                        device: DeviceDep, principal: PrincipalDep) -> JSON:
    principal.require_write(partition)
    return JSON(await device.write(device.config.update_member, partition, pool, member, changes(body)))


@router.delete("/{member}", status_code=204, summary="Remove one member")
async def delete_member(partition: NamePath, pool: NamePath, member: MemberPath, device: DeviceDep,
                        principal: PrincipalDep) -> None:
    principal.require_write(partition)
    await device.write(device.config.delete_member, partition, pool, member)
