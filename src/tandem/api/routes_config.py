"""CRUD routes of the configuration resources, built once for every resource model."""

import asyncio
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request

from tandem.api.collections import QUERIED, Page, page_response, parse_query, require_filter
from tandem.api.deps import DeviceDep, PrincipalDep
from tandem.api.jobs import counted, job_response
from tandem.api.responses import JSON
from tandem.auth import Principal
from tandem.config.query import Query
from tandem.models import CONFIG_RESOURCES, Job, PoolMember, Resource
from tandem.models.fields import NAME_PATTERN, member_key
from tandem.models.partial import changes, patch_model

NamePath = Annotated[str, Path(pattern=NAME_PATTERN)]
MemberPath = Annotated[str, Path(max_length=80, description="address:port, IPv6 as [address]:port")]


async def _partitioned_identity(partition: NamePath, name: NamePath) -> dict[str, str]:
    return {"partition": partition, "name": name}


async def _global_identity(name: NamePath) -> dict[str, str]:
    return {"name": name}


async def _pool_identity(partition: NamePath, pool: NamePath) -> dict[str, str]:
    return {"partition": partition, "pool": pool}


async def _member_identity(partition: NamePath, pool: NamePath, member: MemberPath) -> dict[str, str]:
    return {"partition": partition, "pool": pool, "member": member}


async def _no_parent() -> dict[str, str]:
    return {}


def require_write(principal: Principal, model: type[Resource], partition: str | None) -> None:
    """Partitioned objects (and their children): the caller must be allowed to change that partition;
    others: admins only."""
    if "partition" in model.identity + model.parent_keys and partition is not None:
        principal.require_write(partition)
    else:
        principal.require_admin()


def require_bulk_write(principal: Principal, model: type[Resource], filters: dict[str, str]) -> None:
    """A bulk change by a manager must be confined to one of its partitions by an exact filter."""
    partition = filters.get("partition")
    exact = partition is not None and not any(c in partition for c in "*?")
    require_write(principal, model, partition if exact else None)


def _paths(model: type[Resource]) -> tuple[str, str, Callable[..., Any], Callable[..., Any]]:
    """A resource's collection prefix and item path, and the dependencies reading its parent's
    identity and its own from the URL: `/api/pools` + `/{partition}/{name}`, or for a child
    `/api/pools/{partition}/{pool}/members` + `/{member}`."""
    if model.parent_kind is not None:
        parent_path = "".join(f"/{{{key}}}" for key in model.parent_keys)
        return (f"/api/{model.parent_kind}{parent_path}/{model.kind}", f"/{{{model.path_key}}}",
                _pool_identity, _member_identity)
    if "partition" in model.identity:
        return f"/api/{model.kind}", "/{partition}/{name}", _no_parent, _partitioned_identity
    return f"/api/{model.kind}", "/{name}", _no_parent, _global_identity


def _described(model: type[Resource], parent: dict[str, str]) -> str:
    """What a bulk job changes: `pools`, or `members of /Common/web`."""
    return f"{model.kind} of /" + "/".join(parent.values()) if parent else model.kind


def config_router(model: type[Resource]) -> APIRouter:
    """Routes for one resource: collection GET/POST/PATCH/DELETE and item GET/PATCH/DELETE."""
    prefix, item_path, parent_dep, identity_dep = _paths(model)
    router = APIRouter(prefix=prefix, tags=[model.kind])
    known_fields = [*model.model_fields, *model.former]
    Patch = patch_model(model)
    Parent = Annotated[dict[str, str], Depends(parent_dep)]
    Identity = Annotated[dict[str, str], Depends(identity_dep)]

    def location(parent: dict[str, str], stored: dict[str, Any]) -> str:
        if model.parent_kind is not None:
            return f"{prefix.format(**parent)}/{member_key(stored['address'], stored['port'])}"
        return f"{prefix}/" + "/".join(stored[k] for k in model.identity)

    def bulk_query(request: Request, principal: Principal, parent: dict[str, str]) -> Query:
        """The filters of a bulk change (some required), once the caller may make it: for a child, on
        its parent's partition (checked first); else as `require_bulk_write` says."""
        if parent:
            require_write(principal, model, parent["partition"])
        query = parse_query(request, known_fields)
        require_filter(query)
        if not parent:
            require_bulk_write(principal, model, query.filters)
        return query

    def write_partition(parent: dict[str, str], body: Resource | None = None) -> str | None:
        return parent.get("partition", getattr(body, "partition", None))

    @router.get("", response_model=Page, responses=QUERIED, summary=f"List {model.kind}")
    async def list_collection(request: Request, parent: Parent, device: DeviceDep, _: PrincipalDep) -> JSON:
        query = parse_query(request, known_fields)
        records, after = await asyncio.to_thread(device.config.page, model, query, parent)
        return page_response(request, records, after, query.matched)

    @router.post("", status_code=201, response_model=model, summary=f"Create one of {model.kind}")
    async def create(body: model, parent: Parent, device: DeviceDep,  # type: ignore[valid-type]
                     principal: PrincipalDep) -> JSON:
        require_write(principal, model, write_partition(parent, body))
        stored = await device.write(device.config.create, body, None, parent)
        return JSON(stored, status_code=201, headers={"Location": location(parent, stored)})

    @router.patch("", status_code=202, response_model=Job, summary=f"Change every matching one of {model.kind} (a job)")
    async def patch_collection(request: Request, body: Patch, parent: Parent,  # type: ignore[valid-type]
                               device: DeviceDep, principal: PrincipalDep) -> JSON:
        query = bulk_query(request, principal, parent)
        patch = changes(body)
        job = device.jobs.start(f"update {_described(model, parent)} matching {query.filters}", lambda: counted(
            device, device.config.update_matching, model, query, patch, parent))
        return job_response(job)

    @router.delete("", status_code=202, response_model=Job, responses=QUERIED,
                   summary=f"Delete every matching one of {model.kind} (a job)")
    async def delete_collection(request: Request, parent: Parent, device: DeviceDep,
                                principal: PrincipalDep) -> JSON:
        query = bulk_query(request, principal, parent)
        job = device.jobs.start(f"delete {_described(model, parent)} matching {query.filters}",
                                lambda: counted(device, device.config.delete_matching, model, query, parent))
        return job_response(job)

    @router.get(item_path, response_model=model, responses=QUERIED,
                summary=f"Read one of {model.kind} (`fields=` as for the collection)")
    async def read(request: Request, identity: Identity, device: DeviceDep, _: PrincipalDep) -> JSON:
        return JSON(parse_query(request, known_fields).project(device.config.read(model, identity), model.identity))

    @router.patch(item_path, response_model=model, summary=f"Change one of {model.kind}")
    async def update(identity: Identity, body: Patch, device: DeviceDep,  # type: ignore[valid-type]
                     principal: PrincipalDep) -> JSON:
        require_write(principal, model, write_partition(identity))
        return JSON(await device.write(device.config.update, model, identity, changes(body)))

    @router.delete(item_path, status_code=204, summary=f"Delete one of {model.kind}")
    async def delete(identity: Identity, device: DeviceDep, principal: PrincipalDep) -> None:
        require_write(principal, model, write_partition(identity))
        await device.write(device.config.delete, model, identity)

    return router


ROUTERS = [config_router(model) for model in (*CONFIG_RESOURCES, PoolMember)]
