"""The console's application and where it sits: `Dispatch` hands /ui and / to it and everything else to the
API, and the console calls the API in process (`DeviceApi`) as the signed-in user."""

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from tandem.console import actions, pages
from tandem.console.api import DeviceApi
from tandem.console.live import Streams
from tandem.console.rendering import Renderer
from tandem.console.session import PATH, NeedsLogin, Refused

HERE = Path(__file__).parent
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
    console.mount(f"{PATH}/static", StaticFiles(directory=HERE / "static"), name="static")
    console.include_router(pages.router)
    console.include_router(actions.router)

    @console.get("/", include_in_schema=False)
    @console.get(PATH, include_in_schema=False)
    async def to_the_console() -> Response:
        return RedirectResponse(f"{PATH}/", status_code=303)

    @console.middleware("http")
    async def security_headers(request: Request, call_next):  # type: ignore[no-untyped-def]
        response: Response = await call_next(request)
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
