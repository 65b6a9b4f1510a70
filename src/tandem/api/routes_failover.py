"""Routes of traffic groups and failover: status, events, force standby, offline and online."""

from collections.abc import AsyncIterator
from typing import Annotated

import orjson
from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from tandem.api.collections import QUERIED, Page, paged
from tandem.api.deps import DeviceDep, PrincipalDep, principal
from tandem.api.openapi import errors
from tandem.api.responses import JSON
from tandem.device import Device
from tandem.errors import ApiError
from tandem.failover.status import FailoverStatus
from tandem.models.cluster import TrafficGroup
from tandem.models.fields import NAME_PATTERN
from tandem.models.partial import changes, patch_model
from tandem.store import FailoverEvent

NamePath = Annotated[str, Path(pattern=NAME_PATTERN)]
TrafficGroupPatch = patch_model(TrafficGroup)

router = APIRouter(prefix="/api", tags=["failover"])
KEEPALIVE = 15.0
"""Seconds between the comment lines a watch of the events sends while none happens."""


@router.get("/traffic-groups", response_model=Page, responses=QUERIED, summary="List traffic groups")
async def list_traffic_groups(request: Request, device: DeviceDep, _: PrincipalDep) -> JSON:
    return paged(request, [t.model_dump() for t in device.traffic_groups.all()], list(TrafficGroup.model_fields))


@router.post("/traffic-groups", status_code=201, response_model=TrafficGroup, summary="Create a traffic group")
async def create_traffic_group(body: TrafficGroup, device: DeviceDep, principal: PrincipalDep) -> JSON:
    principal.require_admin()
    group = device.traffic_groups.create(body)
    return JSON(group.model_dump(), status_code=201, headers={"Location": f"/api/traffic-groups/{group.name}"})


@router.get("/traffic-groups/{name}", response_model=TrafficGroup, summary="Read a traffic group")
async def read_traffic_group(name: NamePath, device: DeviceDep, _: PrincipalDep) -> JSON:
    return JSON(device.traffic_groups.get(name).model_dump())


@router.patch("/traffic-groups/{name}", response_model=TrafficGroup, summary="Change a traffic group")
async def update_traffic_group(name: NamePath, body: TrafficGroupPatch, device: DeviceDep,  # type: ignore[valid-type]
                               principal: PrincipalDep) -> JSON:
    principal.require_admin()
    return JSON(device.traffic_groups.update(name, changes(body)).model_dump())


@router.delete("/traffic-groups/{name}", status_code=204, summary="Delete a traffic group")
async def delete_traffic_group(name: NamePath, device: DeviceDep, principal: PrincipalDep) -> None:
    principal.require_admin()
    device.traffic_groups.delete(name)


@router.get("/failover/status", response_model=FailoverStatus,
            summary="This device's failover state: traffic groups, members, heartbeats")
async def failover_status(device: DeviceDep, _: PrincipalDep) -> JSON:
    return JSON(device.failover.status())


@router.get("/failover/events", response_model=Page, summary="Failover transitions of this device, oldest first",
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "With watch=true: the last `limit` transitions, then each as it happens, "
                                            "as server-sent events (`event: transition`, the record as JSON `data`)"
                                            "; a comment line every 15 s while none happens"}})
async def failover_events(request: Request, device: DeviceDep, _: PrincipalDep, traffic_group: str | None = None,
                          limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
                          watch: Annotated[bool, Query(include_in_schema=False)] = False) -> Response:
    # (`watch` is left out of the OpenAPI document: a generated client or fuzzer would hang on the stream; the
    # response's description says how to ask for it)
    if not watch:
        records = device.failover.events(limit, traffic_group)
        return JSON({"records": records, "num_records": len(records), "next": None})
    last = device.failover.events(1)  # first: an event recorded meanwhile is streamed, not lost between the two
    after = last[-1].id if last else 0
    shown = [event for event in device.failover.events(limit, traffic_group) if event.id <= after]
    device.failover.may_watch()  # 503 when too many streams are open
    return StreamingResponse(_event_stream(request, device, traffic_group, shown, after),
                             media_type="text/event-stream", headers={"Cache-Control": "no-store"})


async def _event_stream(request: Request, device: Device, traffic_group: str | None, shown: list[FailoverEvent],
                        after: int) -> AsyncIterator[bytes]:
    with device.failover.watching():
        for event in shown:
            yield _sse(event)
        async for event in device.failover.watch(traffic_group, after, KEEPALIVE):
            if event is not None:
                yield _sse(event)
                continue
            try:  # the caller's credentials still hold (not logged out, not deleted, the token not expired)
                await principal(request)
            except ApiError:
                return
            yield b": keep-alive\n\n"


def _sse(event: FailoverEvent) -> bytes:
    return b"event: %s\nid: %d\ndata: %s\n\n" % (event.kind.encode(), event.id, orjson.dumps(event))


@router.post("/failover/traffic-groups/{name}/force-standby", response_model=FailoverStatus, responses=errors(503),
             summary="Hand a traffic group this device is active for to the next device")
async def force_standby(name: NamePath, device: DeviceDep, principal: PrincipalDep) -> JSON:
    principal.require_admin()
    await device.failover.force_standby(name)
    return JSON(device.failover.status())


@router.post("/failover/offline", response_model=FailoverStatus, responses=errors(503),
             summary="Take this device out: it takes no traffic group")
async def offline(device: DeviceDep, principal: PrincipalDep) -> JSON:
    principal.require_admin()
    await device.failover.set_offline(True)
    return JSON(device.failover.status())


@router.post("/failover/online", response_model=FailoverStatus, responses=errors(503),
             summary="Bring this device back (and clear its forced standbys)")
async def online(device: DeviceDep, principal: PrincipalDep) -> JSON:
    principal.require_admin()
    await device.failover.set_offline(False)
    return JSON(device.failover.status())
