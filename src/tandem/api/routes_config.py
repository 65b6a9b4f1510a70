"""CRUD routes of the configuration resources, built once for every resource model."""

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request

from tandem.api.collections import page_response, parse_query, require_filter
from tandem.api.deps import DeviceDep, PrincipalDep
from tandem.api.jobs import counted, job_response
from tandem.api.responses import JSON
from tandem.auth import Principal
from tandem.models import Monitor, Partition, Pool, Resource, VirtualServer
from tandem.models.fields import NAME_PATTERN
from tandem.models.partial import changes, patch_model

NamePath = Annotated[str, Path(pattern=NAME_PATTERN)]


async def _partitioned_identity(partition: NamePath, name: NamePath) -> dict[str, str]:
    return {"partition": partition, "name": name}


async def _global_identity(name: NamePath) -> dict[str, str]:
    return {"name": name}


def require_write(principal: Principal, model: type[Resource], partition: str | None) -> None:
    """Partitioned objects: the caller must be allowed to change that partition; others: admins only."""
    if "partition" in model.identity and partition is not None:
        principal.require_write(partition)
    else:
        principal.require_admin()


def require_bulk_write(principal: Principal, model: type[Resource], filters: dict[str, str]) -> None:
    """A bulk change by a manager must be confined to one of its partitions by an exact filter."""
    partition = filters.get("partition")
    exact = partition is not None and not any(c in partition for c in "*?")
    require_write(principal, model, partition if exact else None)


def config_router(model: type[Resource]) -> APIRouter:
    """Routes for one resource: collection GET/POST/PATCH/DELETE and item GET/PATCH/DELETE."""
    router = APIRouter(prefix=f"/api/{model.kind}", tags=[model.kind])
    partitioned = "partition" in model.identity
    identity_dep = _partitioned_identity if partitioned else _global_identity
    item_path = "/{partition}/{name}" if partitioned else "/{name}"
    known_fields = list(model.model_fields)
    Patch = patch_model(model)
    Identity = Annotated[dict[str, str], Depends(identity_dep)]

    def location(stored: dict[str, Any]) -> str:
        return f"/api/{model.kind}/" + "/".join(stored[k] for k in model.identity)

    @router.get("", summary=f"List {model.kind}")
    async def list_collection(request: Request, device: DeviceDep, _: PrincipalDep) -> JSON:
        records, after = await asyncio.to_thread(device.config.page, model, parse_query(request, known_fields))
        return page_response(request, records, after)

    @router.post("", status_code=201, response_model=model, summary=f"Create one of {model.kind}")
    async def create(body: model, device: DeviceDep, principal: PrincipalDep) -> JSON:  # type: ignore[valid-type]
        require_write(principal, model, getattr(body, "partition", None))
        stored = await device.write(device.config.create, body)
        return JSON(stored, status_code=201, headers={"Location": location(stored)})

    @router.patch("", status_code=202, summary=f"Change every matching one of {model.kind} (a job)")
    async def patch_collection(request: Request, body: Patch, device: DeviceDep,  # type: ignore[valid-type]
                               principal: PrincipalDep) -> JSON:
        query = parse_query(request, known_fields)
        require_filter(query)
        require_bulk_write(principal, model, query.filters)
        patch = changes(body)
        job = device.jobs.start(f"update {model.kind} matching {query.filters}",
                                lambda: counted(device, device.config.update_matching, model, query, patch))
        return job_response(job)

    @router.delete("", status_code=202, summary=f"Delete every matching one of {model.kind} (a job)")
    async def delete_collection(request: Request, device: DeviceDep, principal: PrincipalDep) -> JSON:
        query = parse_query(request, known_fields)
        require_filter(query)
        require_bulk_write(principal, model, query.filters)
        job = device.jobs.start(f"delete {model.kind} matching {query.filters}",
                                lambda: counted(device, device.config.delete_matching, model, query))
        return job_response(job)

    @router.get(item_path, response_model=model, summary=f"Read one of {model.kind}")
    async def read(identity: Identity, device: DeviceDep, _: PrincipalDep) -> JSON:
        return JSON(device.config.read(model, identity))

    @router.patch(item_path, response_model=model, summary=f"Change one of {model.kind}")
    async def update(identity: Identity, body: Patch, device: DeviceDep,  # type: ignore[valid-type]
                     principal: PrincipalDep) -> JSON:
        require_write(principal, model, identity.get("partition"))
        return JSON(await device.write(device.config.update, model, identity, changes(body)))

    @router.delete(item_path, status_code=204, summary=f"Delete one of {model.kind}")
    async def delete(identity: Identity, device: DeviceDep, principal: PrincipalDep) -> None:
        require_write(principal, model, identity.get("partition"))
        await device.write(device.config.delete, model, identity)

    return router


ROUTERS = [config_router(model) for model in (Partition, Monitor, Pool, VirtualServer)]
