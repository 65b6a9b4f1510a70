"""The console's pages: sign in and out, the overview, the traffic page, a pool's and a virtual server's
page, and the live streams that keep them current."""

from datetime import datetime
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from tandem.console import live, views
from tandem.console.api import DeviceApi, segment
from tandem.console.forms import FORMS
from tandem.console.rendering import Renderer
from tandem.console.session import (
    PATH,
    ConsoleUser,
    NeedsLogin,
    check_form_size,
    check_origin,
    checked_write,
    end_session,
    set_session,
    signed_in,
    source,
)

router = APIRouter(prefix=PATH, include_in_schema=False)
Name = Annotated[str, Query(max_length=64, pattern=r"^[A-Za-z0-9_.\-]*$")]
Cursor = Annotated[str, Query(max_length=300)]
Seen = Annotated[str, Query(max_length=400)]
"""The parts the page shows, by digest (`live.seen_of`)."""


def _api(request: Request) -> DeviceApi:
    return request.app.state.api


def _renderer(request: Request) -> Renderer:
    return request.app.state.renderer


async def _device_name(request: Request) -> str:
    answer = await _api(request).call("GET", "/api/health", None, source(request))
    return answer.body.get("name", "") if answer.ok else ""


async def _signed_in(request: Request) -> tuple[ConsoleUser, views.Caller]:
    user = await signed_in(request, _api(request))
    return user, views.Caller(_api(request), user.token, source(request))


@router.get("/", response_class=Response)
async def overview(request: Request) -> Response:
    user, caller = await _signed_in(request)
    shown = await views.overview(caller)
    parts = live.overview_parts(_renderer(request), shown, user)
    return _renderer(request).page(request, "overview.html", user=user, o=shown, device_name=shown.device,
                                   page="overview", parts=parts, seen=live.seen_of(parts))


@router.get("/login", response_class=Response)
async def login_page(request: Request) -> Response:
    return _renderer(request).page(request, "login.html", device_name=await _device_name(request), error=None,
                                   username="")


@router.post("/login", response_class=Response)
async def login(request: Request, username: Annotated[str, Form(max_length=256)],
                password: Annotated[str, Form(max_length=1024)]) -> Response:
    """Sign in with the API's login (its back-off and audit included); the token goes in the session cookie."""
    check_origin(request)
    await check_form_size(request)
    answer = await _api(request).call("POST", "/api/auth/login", None, source(request),
                                      {"username": username, "password": password})
    if not answer.ok:
        return _renderer(request).page(request, "login.html", status=answer.status,
                                       device_name=await _device_name(request), error=answer.message,
                                       username=username)
    response = RedirectResponse(f"{PATH}/", status_code=303)
    set_session(response, answer.body["token"], datetime.fromisoformat(answer.body["expires_at"]).timestamp())
    return response


@router.post("/logout", response_class=Response)
async def logout(request: Request) -> Response:
    user, caller = await _signed_in(request)
    await checked_write(request, user)
    await caller.send("POST", "/api/auth/logout")
    response = RedirectResponse(f"{PATH}/login", status_code=303)
    end_session(response)
    return response


@router.get("/traffic", response_class=Response)
async def traffic(request: Request, partition: Name = "", after: Cursor = "") -> Response:
    user, caller = await _signed_in(request)
    shown = await views.traffic(caller, partition or None, after or None, None)
    parts = live.traffic_parts(_renderer(request), shown, user)
    query = {k: v for k, v in (("partition", partition), ("after", after), ("seen", live.seen_of(parts))) if v}
    return _renderer(request).page(request, "traffic.html", user=user, t=shown, page="traffic", forms=FORMS,
                                   parts=parts, device_name=await _device_name(request), stream=urlencode(query))


@router.get("/pools/{partition}/{name}", response_class=Response)
async def pool_page(request: Request, partition: str, name: str) -> Response:
    user, caller = await _signed_in(request)
    answer = await caller.get(f"/api/pools/{segment(partition)}/{segment(name)}")
    if not answer.ok:
        return _renderer(request).page(request, "missing.html", status=answer.status, user=user,
                                       device_name=await _device_name(request), message=answer.message,
                                       page="traffic")
    return _renderer(request).page(request, "pool.html", user=user, pool=answer.body, values=answer.body,
                                   errors={}, choices=FORMS["pool"].choices, device_name=await _device_name(request),
                                   page="traffic")


@router.get("/virtuals/{partition}/{name}", response_class=Response)
async def virtual_page(request: Request, partition: str, name: str) -> Response:
    user, caller = await _signed_in(request)
    answer = await caller.get(f"/api/virtuals/{segment(partition)}/{segment(name)}")
    if not answer.ok:
        return _renderer(request).page(request, "missing.html", status=answer.status, user=user,
                                       device_name=await _device_name(request), message=answer.message,
                                       page="traffic")
    return _renderer(request).page(request, "virtual.html", user=user, virtual=answer.body, values=answer.body,
                                   errors={}, choices=FORMS["virtual"].choices,
                                   device_name=await _device_name(request), page="traffic")


@router.get("/stream/overview", response_class=Response)
async def overview_stream(request: Request, seen: Seen = "") -> Response:
    return await _stream(request, lambda user, caller: live.overview_stream(caller, user, _renderer(request), seen))


@router.get("/stream/traffic", response_class=Response)
async def traffic_stream(request: Request, partition: Name = "", after: Cursor = "", seen: Seen = "") -> Response:
    return await _stream(request, lambda user, caller: live.traffic_stream(
        caller, user, _renderer(request), partition or None, after or None, seen))


async def _stream(request: Request, start) -> Response:  # type: ignore[no-untyped-def]
    """A live stream for a signed-in user: 204 otherwise (an EventSource given 204 stops reconnecting), 503
    when too many are open."""
    try:
        user, caller = await _signed_in(request)
    except NeedsLogin:
        return Response(status_code=204)
    streams: live.Streams = request.app.state.streams

    async def body():  # type: ignore[no-untyped-def]
        with streams.opened():
            async for chunk in start(user, caller):
                yield chunk

    if streams.open >= live.MAX_STREAMS:
        return Response("too many live pages are open on this device", status_code=503)
    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
