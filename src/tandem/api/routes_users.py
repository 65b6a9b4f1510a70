"""User routes (admins only). Passwords are hashed before they reach the store and never returned."""

from typing import Annotated

from fastapi import APIRouter, Path, Request

from tandem.api.collections import Page, page_response, parse_query
from tandem.api.deps import DeviceDep, PrincipalDep
from tandem.api.openapi import errors
from tandem.api.responses import JSON
from tandem.errors import Invalid
from tandem.models import User
from tandem.models.fields import NAME_PATTERN
from tandem.models.partial import changes, patch_model

NamePath = Annotated[str, Path(pattern=NAME_PATTERN)]
UserPatch = patch_model(User)
KNOWN_FIELDS = [f for f in User.model_fields if f != "password"]

router = APIRouter(prefix="/api/users", tags=["users"])


@router.get("", response_model=Page, responses=errors(400, 403), summary="List users")
async def list_users(request: Request, device: DeviceDep, principal: PrincipalDep) -> JSON:
    principal.require_admin()
    records, after = device.config.page(User, parse_query(request, KNOWN_FIELDS))
    return page_response(request, records, after)


@router.post("", status_code=201, response_model=User, summary="Create a user")
async def create_user(body: User, device: DeviceDep, principal: PrincipalDep) -> JSON:
    principal.require_admin()
    if body.password is None:
        raise Invalid("password: a new user needs a password", target="password")
    stored = await device.write(device.config.create, body,
                                      {"password_hash": await device.sessions.hash_password(body.password)})
    return JSON(stored, status_code=201, headers={"Location": f"/api/users/{stored['name']}"})


@router.get("/{name}", response_model=User, responses=errors(403), summary="Read a user")
async def read_user(name: NamePath, device: DeviceDep, principal: PrincipalDep) -> JSON:
    principal.require_admin()
    return JSON(device.config.read(User, {"name": name}))


@router.patch("/{name}", response_model=User, summary="Change a user; their sessions end")
async def update_user(name: NamePath, body: UserPatch, device: DeviceDep,  # type: ignore[valid-type]
                      principal: PrincipalDep) -> JSON:
    principal.require_admin()
    patch = changes(body)
    extra = None
    if patch.get("password") is not None:
        extra = {"password_hash": await device.sessions.hash_password(patch["password"])}
    patch.pop("password", None)
    stored = await device.write(device.config.update, User, {"name": name}, patch, extra)
    device.sessions.forget_user(name)
    return JSON(stored)


@router.delete("/{name}", status_code=204, summary="Delete a user; their sessions end")
async def delete_user(name: NamePath, device: DeviceDep, principal: PrincipalDep) -> None:
    principal.require_admin()
    await device.write(device.config.delete, User, {"name": name})
    device.sessions.forget_user(name)
