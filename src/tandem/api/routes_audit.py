"""`GET /api/audit`: this device's audit trail (`auth.audit`), newest first; admins and auditors only."""

from datetime import datetime
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request

from tandem.api.collections import Page
from tandem.api.deps import DeviceDep, PrincipalDep
from tandem.api.openapi import errors
from tandem.api.responses import JSON
from tandem.errors import Forbidden
from tandem.store import AuditQuery

router = APIRouter(prefix="/api", tags=["device"])


@router.get("/audit", response_model=Page, responses=errors(400, 403),
            summary="The audit trail: writes asked of this device, refused logins and refusals, newest first")
async def audit(request: Request, device: DeviceDep, principal: PrincipalDep,
                user: Annotated[str | None, Query(max_length=64)] = None,
                via: Annotated[str | None, Query(max_length=80)] = None,
                action: Annotated[str | None, Query(max_length=200, description="a part of `METHOD /route`")] = None,
                status: Annotated[int | None, Query(ge=100, le=599)] = None,
                since: datetime | None = None, until: datetime | None = None,
                before: Annotated[int | None, Query(ge=1, description="entries older than this id: the next page")
                                  ] = None,
                limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> JSON:
    if principal.role not in ("admin", "auditor"):
        raise Forbidden(f"user {principal.username!r} ({principal.role}) may not read the audit trail: admins and "
                        "auditors only")
    entries = device.audit.entries(AuditQuery(
        user=user, via=via, action=action, status=status, since=since.timestamp() if since else 0.0,
        until=until.timestamp() if until else float("inf"), before=before, limit=limit))
    next_link = None
    if len(entries) == limit:
        params = [(k, v) for k, v in request.query_params.multi_items() if k != "before"]
        next_link = f"{request.url.path}?{urlencode([*params, ('before', str(entries[-1].id))])}"
    return JSON({"records": entries, "num_records": len(entries), "next": next_link})
