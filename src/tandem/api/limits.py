"""Refuse request bodies that are not JSON or are over the size limit, before they are read."""

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tandem.api.responses import error_response
from tandem.errors import PayloadTooLarge, UnsupportedMediaType

MAX_BODY_BYTES = 1 << 20
OVER_LIMIT = "tandem.body_over_limit"
"""Set in the scope when a streamed body passed the limit (the framework may turn the error into a 400)."""


def too_large_error() -> PayloadTooLarge:
    return PayloadTooLarge(f"request body over {MAX_BODY_BYTES} bytes", target="body")


class _TooLarge(Exception):
    pass


class JsonBodies:
    """ASGI middleware: a body must be `Content-Type: application/json` (else 415) and at most
    `MAX_BODY_BYTES`, whether declared by Content-Length or streamed (else 413)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = error_response(too_large_error())
        headers = dict(scope["headers"])
        length = headers.get(b"content-length", b"0")
        if not length.isdigit() or int(length) > MAX_BODY_BYTES:
            await too_large(scope, receive, send)
            return
        has_body = length != b"0" or b"transfer-encoding" in headers
        content_type = headers.get(b"content-type", b"application/json").split(b";")[0].strip().lower()
        if has_body and content_type != b"application/json":
            error = UnsupportedMediaType(f"send JSON with Content-Type: application/json, not "
                                         f"{content_type.decode(errors='replace')}", target="Content-Type")
            await error_response(error)(scope, receive, send)
            return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > MAX_BODY_BYTES:
                    scope[OVER_LIMIT] = True
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await too_large(scope, receive, send)
