"""Login, the health probe, this device, and the OpenAPI document."""

from datetime import UTC, datetime

from fastapi import APIRouter, Request

from tandem.api.deps import DeviceDep, PrincipalDep, source
from tandem.api.openapi import errors
from tandem.api.responses import JSON
from tandem.models import DeviceInfo, Health, LoginRequest, Token
from tandem.models.api import ManagementCertificateRequest, ManagementCertificateView

router = APIRouter(prefix="/api", tags=["device"])


@router.get("/health", response_model=Health, summary="Health probe (no credentials needed)")
async def health(device: DeviceDep) -> JSON:
    return JSON({"status": "ok", "name": device.name})


@router.post("/auth/login", response_model=Token, responses=errors(401, 429),
             summary="Log in: a token to send as `Authorization: Bearer`")
async def login(body: LoginRequest, request: Request, device: DeviceDep) -> JSON:
    request.state.username = body.username  # the audit trail names who tried
    token, expires_at, who = await device.sessions.login(body.username, body.password, source(request))
    return JSON({"token": token, "expires_at": datetime.fromtimestamp(expires_at, UTC), "username": who.username,
                 "role": who.role})


@router.post("/auth/logout", status_code=204, summary="End this session")
async def logout(request: Request, device: DeviceDep, _: PrincipalDep) -> None:
    scheme, _sep, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        device.sessions.logout(token.strip())


@router.get("/auth/whoami", summary="Who the credentials name")
async def whoami(principal: PrincipalDep) -> JSON:
    return JSON({"username": principal.username, "role": principal.role, "partitions": list(principal.partitions)})


@router.get("/device", response_model=DeviceInfo, summary="This device")
async def device_info(device: DeviceDep, _: PrincipalDep) -> JSON:
    return JSON(device.info().model_dump())


@router.get("/device/certificate", response_model=ManagementCertificateView,
            summary="The certificate this device's API presents")
async def management_certificate(device: DeviceDep, _: PrincipalDep) -> JSON:
    return JSON(device.management_tls.show())


@router.put("/device/certificate", response_model=ManagementCertificateView, responses=errors(403, 422),
            summary="Present a CA-signed certificate from now on (peers told first; their links stay)")
async def install_management_certificate(body: ManagementCertificateRequest, device: DeviceDep,
                                         principal: PrincipalDep) -> JSON:
    principal.require_admin()
    return JSON(await device.management_tls.install(body.certificate, body.key))


@router.delete("/device/certificate", response_model=ManagementCertificateView, responses=errors(403),
               summary="Present the device's own identity certificate again")
async def revert_management_certificate(device: DeviceDep, principal: PrincipalDep) -> JSON:
    principal.require_admin()
    return JSON(await device.management_tls.revert())


@router.get("/openapi.json", include_in_schema=False)
async def openapi(request: Request, _: PrincipalDep) -> JSON:
    return JSON(request.app.openapi())
