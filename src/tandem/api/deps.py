"""Request dependencies: the device and the authenticated caller."""

from typing import Annotated

from fastapi import Depends, Request

from tandem.auth import Principal
from tandem.device import Device


async def device(request: Request) -> Device:
    return request.app.state.device


def source(request: Request) -> str:
    """The caller's address, which failed logins are counted by."""
    return request.client.host if request.client else ""


async def principal(request: Request) -> Principal:
    """The caller, authenticated from the Authorization header; 401 otherwise (429 while failed Basic
    logins back off). Kept in the request's state for the audit trail."""
    caller = await request.app.state.device.sessions.authenticate(request.headers.get("authorization"),
                                                                  source(request))
    request.state.principal = caller
    return caller


DeviceDep = Annotated[Device, Depends(device)]
PrincipalDep = Annotated[Principal, Depends(principal)]
