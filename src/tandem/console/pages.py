"""The console's pages: sign in and out, the overview, the traffic page, a pool's and a virtual server's
page, and the live streams that keep them current."""

from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from tandem.console import live, views
from tandem.console.api import DeviceApi, NamePath, segment
from tandem.console.forms import FORMS
from tandem.console.rendering import Renderer
from tandem.console.session import (
    COOKIE,
    PATH,
    ConsoleUser,
    NeedsLogin,
    check_origin,
    checked_write,
    end_session,
    form_of,
    set_session,
    signed_in,
    source,
)
from tandem.models.fields import NAME_PATTERN

router = APIRouter(prefix=PATH, include_in_schema=False)
PartitionFilter = Annotated[str, Query(pattern=f"^$|{NAME_PATTERN}")]
"""A partition to show (empty: all)."""
Cursor = Annotated[str, Query(max_length=300)]
Shown = Annotated[str, Query(max_length=64)]
"""The token under which the page's parts were remembered (`live.Shown`)."""


def _api(request: Request) -> DeviceApi:
    return request.app.state.api


def _renderer(request: Request) -> Renderer:
    return request.app.state.renderer


def _shown(request: Request) -> live.Shown:
    return request.app.state.shown


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
    return _renderer(request).page(request, "overview.html", user=user, o=shown, device_name=shown.cluster.device,
                                   page="overview", parts=parts, shown=_shown(request).remember(parts))


@router.get("/login", response_class=Response)
async def login_page(request: Request) -> Response:
    return _renderer(request).page(request, "login.html", device_name=await _device_name(request), error=None,
                                   username="")


@router.post("/login", response_class=Response)
async def login(request: Request) -> Response:
    """Sign in with the API's login (its back-off and audit included); the token goes in the session cookie, and
    a session the browser held before ends."""
    check_origin(request, required=True)
    form = await form_of(request)
    username, password = form.get("username", "")[:256], form.get("password", "")
    answer = await _api(request).call("POST", "/api/auth/login", None, source(request),
                                      {"username": username, "password": password})
    if not answer.ok:
        return _renderer(request).page(request, "login.html", status=answer.status,
                                       device_name=await _device_name(request), error=answer.message,
                                       username=username)
    earlier = request.cookies.get(COOKIE)
    if earlier:
        await _api(request).call("POST", "/api/auth/logout", earlier, source(request))
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
async def traffic(request: Request, partition: PartitionFilter = "", after: Cursor = "") -> Response:
    user, caller = await _signed_in(request)
    shown = await views.traffic(caller, partition or None, after or None, None)
    parts = live.traffic_parts(_renderer(request), shown, user)
    shown_as = _shown(request).remember(parts)
    query = {k: v for k, v in (("partition", partition), ("after", after), ("shown", shown_as)) if v}
    return _renderer(request).page(request, "traffic.html", user=user, t=shown, page="traffic", forms=FORMS,
                                   parts=parts, device_name=await _device_name(request), stream=urlencode(query))


OBJECT_PAGES = {"pools": ("pool.html", "pool"), "virtuals": ("virtual.html", "virtual")}
"""The page of each kind of object that has one: its template and its form (`forms.FORMS`)."""


@router.get("/{collection}/{partition}/{name}", response_class=Response)
async def object_page(request: Request, collection: str, partition: NamePath, name: NamePath) -> Response:
    """A pool's or a virtual server's page: its form (or its facts, for those who may not change it)."""
    user, caller = await _signed_in(request)
    template, form = OBJECT_PAGES.get(collection, ("missing.html", ""))
    answer = await caller.get(f"/api/{collection}/{segment(partition)}/{segment(name)}") if form else None
    if answer is None or not answer.ok:
        message = answer.message if answer is not None else f"no page for {collection!r}"
        return _renderer(request).page(request, "missing.html", status=answer.status if answer else 404, user=user,
                                       device_name=await _device_name(request), message=message, page="traffic")
    return _renderer(request).page(request, template, user=user, obj=answer.body, values=answer.body, errors={},
                                   choices=FORMS[form].choices, device_name=await _device_name(request),
                                   page="traffic")


@router.get("/stream/overview", response_class=Response)
async def overview_stream(request: Request, shown: Shown = "") -> Response:
    seen = _shown(request).take(shown)
    return await _stream(request, lambda user, caller: live.overview_stream(caller, user, _renderer(request), seen))


@router.get("/stream/traffic", response_class=Response)
async def traffic_stream(request: Request, partition: PartitionFilter = "", after: Cursor = "",
                         shown: Shown = "") -> Response:
    seen = _shown(request).take(shown)
    return await _stream(request, lambda user, caller: live.traffic_stream(
        caller, user, _renderer(request), partition or None, after or None, seen))


async def _stream(request: Request, start: Callable[[ConsoleUser, views.Caller], AsyncIterator[bytes]]
                  ) -> Response:
    """A live stream for a signed-in user; without a session, a stream of one `signed-out` event (the page
    then goes to sign-in); 503 when too many are open (`live.Streams`)."""
    try:
        user, caller = await _signed_in(request)
    except NeedsLogin:
        return Response(live.event("signed-out", ""), media_type="text/event-stream")
    streams: live.Streams = request.app.state.streams
    slot = streams.take(user.username)
    if slot is None:
        return Response(f"too many live pages are open on this device (at most {live.MAX_STREAMS}, "
                        f"{live.MAX_STREAMS_PER_USER} of one user)", status_code=503)
    return StreamingResponse(streams.held(slot, start(user, caller)), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
