"""User routes (admins only): the users of the trust domain, valid on every member (`trust.users`). Passwords are
hashed before they are kept and never returned."""

from typing import Annotated

from fastapi import APIRouter, Path, Request

from tandem.api.collections import Page, paged
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
    return paged(request, device.users.all(), KNOWN_FIELDS)


@router.post("", status_code=201, response_model=User, summary="Create a user (on every member of the trust domain)")
async def create_user(body: User, device: DeviceDep, principal: PrincipalDep) -> JSON:
    principal.require_admin()
    if body.password is None:
        raise Invalid("password: a new user needs a password", target="password")
    created = device.users.create(body, await device.sessions.hash_password(body.password))
    return JSON(created, status_code=201, headers={"Location": f"/api/users/{created['name']}"})


@router.get("/{name}", response_model=User, responses=errors(403), summary="Read a user")
async def read_user(name: NamePath, device: DeviceDep, principal: PrincipalDep) -> JSON:
    principal.require_admin()
    return JSON(device.users.get(name))


@router.patch("/{name}", response_model=User, summary="Change a user; their sessions end on every member")
async def update_user(name: NamePath, body: UserPatch, device: DeviceDep,  # type: ignore[valid-type]
                      principal: PrincipalDep) -> JSON:
    principal.require_admin()
    patch = changes(body)
    password = patch.pop("password", None)
    password_hash = await device.sessions.hash_password(password) if password is not None else None
    return JSON(device.users.update(name, patch, password_hash))


@router.delete("/{name}", status_code=204, summary="Delete a user; their sessions end on every member")
async def delete_user(name: NamePath, device: DeviceDep, principal: PrincipalDep) -> None:
    principal.require_admin()
    device.users.delete(name)
