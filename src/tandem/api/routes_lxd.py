"""The membership view on LXD's own paths and envelope, read-only, for LXD's clients (pylxd): `/1.0`, `/1.0/cluster`,
`/1.0/cluster/members[/{name}]`, behind the same authentication as the rest of the API.

LXD answers `{"type": "sync", "status": "Success", "status_code": 200, "metadata": ...}`, and an error as
`{"type": "error", "error": MESSAGE, "error_code": STATUS}` with that HTTP status, which pylxd turns into its
`NotFound` (404) or `LXDAPIException`.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel

from tandem._version import __version__
from tandem.api.deps import DeviceDep, PrincipalDep
from tandem.api.responses import JSON
from tandem.errors import ApiError

MemberName = Annotated[str, Path()]
"""Any text (the request head's limit bounds it): a name no member has is LXD's 404, whatever it holds."""
EXTENSIONS = ["clustering"]
"""The API extensions of LXD's that these paths provide (pylxd asks for `clustering` before reading a cluster)."""

router = APIRouter(prefix="/1.0", tags=["lxd"])


class LxdError(BaseModel):
    """An error in LXD's envelope."""

    type: str
    status: str
    status_code: int
    operation: str
    error_code: int
    error: str
    metadata: None


def _sync(metadata: Any) -> JSON:
    return JSON({"type": "sync", "status": "Success", "status_code": 200, "operation": "", "error_code": 0,
                 "error": "", "metadata": metadata})


def _error(error: ApiError) -> JSON:
    return JSON({"type": "error", "status": "", "status_code": 0, "operation": "", "error_code": error.status,
                 "error": error.message, "metadata": None}, status_code=error.status)


@router.get("", summary="The server, as LXD describes itself (LXD's envelope)")
async def server(device: DeviceDep, _: PrincipalDep) -> JSON:
    cluster = device.members.cluster()
    return _sync({"api_extensions": EXTENSIONS, "api_status": "stable", "api_version": "1.0", "auth": "trusted",
                  "auth_methods": ["tls"], "public": False,
                  "environment": {"server": "tandem", "server_version": __version__, "server_name": device.name,
                                  "server_clustered": cluster.enabled, "project": "default"}})


@router.get("/cluster", summary="The cluster, as LXD shows it (LXD's envelope)")
async def cluster(device: DeviceDep, _: PrincipalDep) -> JSON:
    view = device.members.cluster()
    return _sync({"server_name": view.server_name, "enabled": view.enabled,
                  "member_config": [field.model_dump() for field in view.member_config]})


@router.get("/cluster/members", summary="The members' URLs, as LXD lists them (LXD's envelope)")
async def members(device: DeviceDep, _: PrincipalDep) -> JSON:
    return _sync([f"/1.0/cluster/members/{view.server_name}" for view in device.members.views()])


@router.get("/cluster/members/{name}", responses={404: {"model": LxdError}},
            summary="One member, as LXD shows it (LXD's envelope; 404 as LXD's)")
async def member(name: MemberName, device: DeviceDep, _: PrincipalDep) -> JSON:
    try:
        view = device.members.view(name)
    except ApiError as error:
        return _error(error)
    return _sync({**view.model_dump(), "architecture": "", "description": "", "failure_domain": "default",
                  "groups": [], "config": {}})
