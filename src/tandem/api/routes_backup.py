"""`POST /api/backup`: the device's backup archive (`tandem.backups`), for admins; `tandem restore` puts it back."""

from fastapi import APIRouter, Response

from tandem.api.deps import DeviceDep, PrincipalDep
from tandem.api.openapi import errors
from tandem.models.api import BackupRequest

router = APIRouter(prefix="/api", tags=["device"])
ARCHIVE_TYPE = "application/x-tar"


@router.post("/backup", responses={200: {"content": {ARCHIVE_TYPE: {}}}, **errors(403, 507)},
             response_class=Response,
             summary="A backup of this device: configuration, users, trust domain, identity; sealed with a passphrase")
async def backup(body: BackupRequest, device: DeviceDep, principal: PrincipalDep) -> Response:
    principal.require_admin()
    manifest, archive = await device.backup(body.passphrase)
    stamp = manifest.created_at.strftime("%Y%m%dT%H%M%SZ")
    return Response(archive, media_type=ARCHIVE_TYPE, headers={
        "Content-Disposition": f'attachment; filename="tandem-{manifest.device}-{stamp}.backup"',
        "Cache-Control": "no-store"})
