"""Routes of cluster peering (ONTAP style): /api/cluster/peers and the partitions mirrored to each peer.

Reads are open to every role; creating, changing and deleting relationships and mirrors is for admins.
A relationship is named in paths by its uuid (its name works too).
"""

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request

from tandem.api.collections import QUERIED, Page, paged, parse_query, require_filter
from tandem.api.deps import DeviceDep, PrincipalDep
from tandem.api.jobs import job_response
from tandem.api.openapi import errors
from tandem.api.responses import JSON
from tandem.device import Device
from tandem.models import Job
from tandem.models.fields import NAME_PATTERN
from tandem.models.peering import MirrorRequest, PeerCreate, PeerPatch

KeyPath = Annotated[str, Path(pattern=NAME_PATTERN)]
PEER_FIELDS = ["uuid", "name", "remote", "authentication", "encryption", "status", "ipspace", "local_network",
               "initial_allowed_partitions", "mirrors", "mirrored_in"]
MIRROR_FIELDS = ["partition", "state", "pusher", "last_sync", "objects", "message"]

router = APIRouter(prefix="/api/cluster/peers", tags=["cluster peers"])


def _matching(request: Request, device: Device) -> list[str]:
    query = parse_query(request, PEER_FIELDS)
    require_filter(query)
    return [p["uuid"] for p in device.peering.all() if query.matches(p)]


@router.get("/", include_in_schema=False)  # ONTAP's examples name the collection with a trailing slash
@router.get("", response_model=Page, responses=QUERIED, summary="List the cluster peers")
async def list_peers(request: Request, device: DeviceDep, _: PrincipalDep) -> JSON:
    return paged(request, device.peering.all(), PEER_FIELDS)


@router.post("/", status_code=201, include_in_schema=False)
@router.post("", status_code=201, responses=errors(502),
             summary="Create a peer relationship, or an offer (generate_passphrase alone)")
async def create_peer(request: Request, body: PeerCreate, device: DeviceDep, principal: PrincipalDep) -> JSON:
    principal.require_admin()
    peer = await device.peering.create(body)
    location = {"Location": f"/api/cluster/peers/{peer['uuid']}"}
    if request.query_params.get("return_records", "").lower() == "true":  # ONTAP's answer, which netapp_ontap reads
        return JSON({"num_records": 1, "records": [peer]}, status_code=201, headers=location)
    return JSON(peer, status_code=201, headers=location)


@router.patch("", status_code=202, response_model=Job, summary="Change every matching cluster peer (a job)")
async def patch_peers(request: Request, body: PeerPatch, device: DeviceDep, principal: PrincipalDep) -> JSON:
    principal.require_admin()
    uuids = _matching(request, device)

    async def work() -> dict[str, Any]:
        for uuid in uuids:
            await device.peering.update(uuid, body)
        return {"count": len(uuids)}

    return job_response(device.jobs.start(f"update {len(uuids)} cluster peers", work))


@router.delete("", status_code=202, response_model=Job, responses=QUERIED,
               summary="Delete every matching cluster peer (a job)")
async def delete_peers(request: Request, device: DeviceDep, principal: PrincipalDep) -> JSON:
    principal.require_admin()
    uuids = _matching(request, device)

    async def work() -> dict[str, Any]:
        return {"count": len(uuids), "peers": [await device.peering.delete(uuid) for uuid in uuids]}

    return job_response(device.jobs.start(f"delete {len(uuids)} cluster peers", work))


@router.get("/{key}", responses=QUERIED, summary="Read a cluster peer (`fields=` as for the collection)")
async def read_peer(request: Request, key: KeyPath, device: DeviceDep, _: PrincipalDep) -> JSON:
    peer = device.peering.get(device.peering.uuid_of(key))
    return JSON(parse_query(request, PEER_FIELDS).project(peer, ("uuid",)))


@router.patch("/{key}", responses=errors(502),
              summary="Rotate the passphrase, change remote addresses or the proposed encryption")
async def update_peer(key: KeyPath, body: PeerPatch, device: DeviceDep, principal: PrincipalDep) -> JSON:
    principal.require_admin()
    return JSON(await device.peering.update(device.peering.uuid_of(key), body))


@router.delete("/{key}", summary="Delete a relationship (on both clusters when the other is reachable)")
async def delete_peer(key: KeyPath, device: DeviceDep, principal: PrincipalDep) -> JSON:
    principal.require_admin()
    return JSON(await device.peering.delete(device.peering.uuid_of(key)))


@router.get("/{key}/mirrors", response_model=Page, responses=QUERIED, summary="The partitions mirrored to this peer")
async def list_mirrors(request: Request, key: KeyPath, device: DeviceDep, _: PrincipalDep) -> JSON:
    return paged(request, device.peering.mirror_views(device.peering.uuid_of(key)), MIRROR_FIELDS, key="partition")


@router.post("/{key}/mirrors", status_code=201, summary="Mirror a partition of this cluster to the peer")
async def add_mirror(key: KeyPath, body: MirrorRequest, device: DeviceDep, principal: PrincipalDep) -> JSON:
    principal.require_admin()
    uuid = device.peering.uuid_of(key)
    mirror = await device.peering.add_mirror(uuid, body.partition)
    return JSON(mirror, status_code=201, headers={"Location": f"/api/cluster/peers/{uuid}/mirrors/{body.partition}"})


@router.get("/{key}/mirrors/{partition}", summary="One mirrored partition")
async def read_mirror(key: KeyPath, partition: KeyPath, device: DeviceDep, _: PrincipalDep) -> JSON:
    return JSON(device.peering.mirror_view(device.peering.uuid_of(key), partition))


@router.delete("/{key}/mirrors/{partition}", status_code=204, summary="Stop mirroring a partition (the peer keeps it)")
async def remove_mirror(key: KeyPath, partition: KeyPath, device: DeviceDep, principal: PrincipalDep) -> None:
    principal.require_admin()
    await device.peering.remove_mirror(device.peering.uuid_of(key), partition)
