"""The console's application and where it sits: `Dispatch` hands /ui and / to it and everything else to the
API, and the console calls the API in process (`DeviceApi`) as the signed-in user."""

import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from tandem.console import actions, pages
from tandem.console.api import DeviceApi
from tandem.console.live import Shown, Streams
from tandem.console.rendering import Renderer
from tandem.console.session import PATH, NeedsLogin, Refused, check_body

HERE = Path(__file__).parent
log = logging.getLogger("tandem.console")
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Strict-Transport-Security": "max-age=31536000",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def create_console(api: ASGIApp) -> FastAPI:
    """The console of the device whose API application is `api`."""
    console = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    console.state.api = DeviceApi(api)
    console.state.renderer = Renderer(HERE / "templates")
    console.state.streams = Streams()
    console.state.shown = Shown()
    console.mount(f"{PATH}/static", StaticFiles(directory=HERE / "static"), name="static")
    console.include_router(pages.router)
    console.include_router(actions.router)

    @console.get("/", include_in_schema=False)
    @console.get(PATH, include_in_schema=False)
    async def to_the_console() -> Response:
        return RedirectResponse(f"{PATH}/", status_code=303)

    @console.middleware("http")
    async def security_headers(request: Request, call_next):  # type: ignore[no-untyped-def]
        """Every answer with the security headers; a body the console does not take refused before it is read."""
        try:
            check_body(request)
        except Refused as refused:
            response = Response(refused.message, status_code=refused.status)
        else:
            response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        if not request.url.path.startswith(f"{PATH}/static/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    @console.exception_handler(NeedsLogin)
    async def needs_login(request: Request, _: NeedsLogin) -> Response:
        if request.headers.get("hx-request"):
            return Response(status_code=401, headers={"HX-Redirect": f"{PATH}/login"})
        return RedirectResponse(f"{PATH}/login", status_code=303)

    @console.exception_handler(Refused)
    async def refused(request: Request, error: Refused) -> Response:
        return request.app.state.renderer.flash(request, error.message, "error", status=error.status)

    @console.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> Response:
        where = ".".join(str(part) for part in error.errors()[0].get("loc", ())) if error.errors() else "request"
        return request.app.state.renderer.flash(request, f"refused: {where} is not valid here", "error", status=422)

    @console.exception_handler(Exception)
    async def failed(request: Request, error: Exception) -> Response:
        log.exception("the console failed on %s %s", request.method, request.url.path, exc_info=error)
        return request.app.state.renderer.flash(request, "the console failed on this request: see the device's log",
                                                "error", status=500)

    return console


class Dispatch:
    """The device's HTTPS application: the console on /ui (and / sends a browser there), the API elsewhere."""

    def __init__(self, api: ASGIApp) -> None:
        self._api = api
        self._console = create_console(api)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and (path == "/" or path == PATH or path.startswith(f"{PATH}/")):
            await self._console(scope, receive, send)
        else:
            await self._api(scope, receive, send)
