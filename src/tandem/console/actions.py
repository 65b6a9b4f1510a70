"""The console's actions: each a POST with the session's CSRF token, turned into the API call it stands for
and made as the signed-in user, so the API validates, refuses (403 for an auditor) and audits it. A form
comes back with the API's error at the field it names; a button's answer is a message."""

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, Response

from tandem.console.api import Answer, NamePath, segment
from tandem.console.forms import FORMS, FormSpec, field_errors
from tandem.console.rendering import Renderer
from tandem.console.session import PATH, ConsoleUser, Refused, checked_write, form_of, signed_in, source
from tandem.console.views import Caller

router = APIRouter(prefix=f"{PATH}/actions", include_in_schema=False)
MEMBER_STATES = FORMS["member"].choices["state"]
MemberPath = Annotated[str, Path(pattern=r"^(\[[0-9A-Fa-f:.]{2,45}\]|[0-9.]{7,15}):[0-9]{1,5}$")]
"""A member's key: `address:port`, an IPv6 address in brackets."""


@dataclass(frozen=True)
class Acting:
    user: ConsoleUser
    caller: Caller
    renderer: Renderer


async def _acting(request: Request) -> Acting:
    user = await signed_in(request, request.app.state.api)
    await checked_write(request, user)
    return Acting(user, Caller(request.app.state.api, user.token, source(request)), request.app.state.renderer)


def _said(request: Request, acting: Acting, answer: Answer, done: str, secret: str | None = None) -> HTMLResponse:
    if answer.ok:
        return acting.renderer.flash(request, done, secret=secret)
    return acting.renderer.flash(request, answer.message, "error", status=answer.status)


@router.post("/traffic-groups/{name}/force-standby", response_class=Response)
async def force_standby(request: Request, name: NamePath) -> Response:
    acting = await _acting(request)
    answer = await acting.caller.send("POST", f"/api/failover/traffic-groups/{segment(name)}/force-standby")
    return _said(request, acting, answer, f"{name}: this device stands by; the next device takes it")


@router.post("/device/{state}", response_class=Response)
async def device_state(request: Request, state: str) -> Response:
    acting = await _acting(request)
    if state not in ("offline", "online"):
        raise Refused(404, f"a device is brought offline or online, not {state!r}")
    answer = await acting.caller.send("POST", f"/api/failover/{state}")
    return _said(request, acting, answer, f"this device is now {state}")


@router.post("/device-groups/{name}/sync", response_class=Response)
async def sync(request: Request, name: NamePath) -> Response:
    acting = await _acting(request)
    device = await acting.caller.get("/api/device")
    if not device.ok:
        return _said(request, acting, device, "")
    answer = await acting.caller.send("POST", f"/api/device-groups/{segment(name)}/sync",
                                      {"from": device.body["name"]})
    return _said(request, acting, answer, f"{name}: syncing from {device.body['name']} to the group")


@router.post("/peers/offer", response_class=Response)
async def peering_offer(request: Request) -> Response:
    acting = await _acting(request)
    name = (await form_of(request)).get("name", "")
    body: dict[str, Any] = {"authentication": {"generate_passphrase": True}}
    if name:
        body["name"] = name
    answer = await acting.caller.send("POST", "/api/cluster/peers", body)
    passphrase = (answer.body.get("authentication") or {}).get("passphrase") if answer.ok else None
    return _said(request, acting, answer, "Peering offer created. Give the other cluster this passphrase; it is "
                 "shown once:", secret=passphrase)


@router.post("/forms/{kind}", response_class=Response)
async def create(request: Request, kind: str) -> Response:
    """Create a pool, a virtual server or a member from its form."""
    acting = await _acting(request)
    spec = FORMS.get(kind)
    if spec is None:
        raise Refused(404, f"no form {kind!r}")
    values = await _values(request, spec)
    body, path = spec.request(values)
    answer = await acting.caller.send("POST", path, body)
    return _form_answer(request, acting, spec, values, answer, created=True)


@router.post("/objects/{kind}/{partition}/{name}", response_class=Response)
async def update(request: Request, kind: str, partition: NamePath, name: NamePath) -> Response:
    """Change a pool or a virtual server from its page's form."""
    acting = await _acting(request)
    spec = _object_form(kind)
    values = await _values(request, spec)
    body, _ = spec.request(values | {"partition": partition, "name": name})
    changes = {k: v for k, v in body.items() if k not in ("partition", "name")}
    answer = await acting.caller.send("PATCH", spec.item_path(partition, name), changes)
    return _form_answer(request, acting, spec, values | {"partition": partition, "name": name}, answer,
                        created=False)


def _object_form(kind: str) -> FormSpec:
    """The form of a kind of object that is changed and deleted by partition and name (pool, virtual)."""
    spec = FORMS.get(kind)
    if spec is None or spec.collection is None:
        raise Refused(404, f"no objects of kind {kind!r} are changed here")
    return spec


async def _values(request: Request, spec: FormSpec) -> dict[str, str]:
    """The form's values of the spec's fields (anything else sent is left out; a checkbox not sent is off)."""
    form = await form_of(request)
    return {key: value for key, value in form.items() if key in spec.fields} | {
        box: form.get(box, "") for box in spec.checkboxes}


def _form_answer(request: Request, acting: Acting, spec: FormSpec, values: dict[str, str], answer: Answer,
                 created: bool) -> Response:
    if answer.ok:
        shown = {} if created else answer.body  # what the device now holds
        done = f"{spec.title} {spec.described(values)} {'created' if created else 'saved'}"
        return acting.renderer.page(request, spec.template, user=acting.user, values=shown, errors={},
                                    editing=not created, flash=done, flash_kind="ok", choices=spec.choices)
    return acting.renderer.page(request, spec.template, status=answer.status, user=acting.user, values=values,
                                errors=field_errors(answer, spec.fields), editing=not created,
                                flash=answer.message, flash_kind="error", choices=spec.choices)


@router.post("/delete/{kind}/{partition}/{name}", response_class=Response)
async def delete(request: Request, kind: str, partition: NamePath, name: NamePath) -> Response:
    acting = await _acting(request)
    spec = _object_form(kind)
    answer = await acting.caller.send("DELETE", spec.item_path(partition, name))
    if answer.ok:
        return Response(status_code=200, headers={"HX-Redirect": f"{PATH}/traffic"})
    return acting.renderer.flash(request, answer.message, "error", status=answer.status)


@router.post("/members/{partition}/{pool}/{member}", response_class=Response)
async def member(request: Request, partition: NamePath, pool: NamePath, member: MemberPath) -> Response:
    """Enable, disable, drain or remove (`state` delete) a pool member."""
    acting = await _acting(request)
    state = (await form_of(request)).get("state", "")
    path = f"/api/pools/{segment(partition)}/{segment(pool)}/members/{segment(member)}"
    if state == "delete":
        answer = await acting.caller.send("DELETE", path)
        return _said(request, acting, answer, f"member {member} removed from /{partition}/{pool}")
    if state not in MEMBER_STATES:
        return acting.renderer.flash(request, f"state: one of {', '.join(MEMBER_STATES)}", "error", status=422)
    answer = await acting.caller.send("PATCH", path, {"state": state})
    return _said(request, acting, answer, f"member {member} of /{partition}/{pool}: {state}")
