"""Refuse request bodies that are too large or not JSON before they are read."""

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tandem.api.responses import error_response
from tandem.errors import PayloadTooLarge, UnsupportedMediaType

MAX_BODY_BYTES = 1 << 20


class _TooLarge(Exception):
    pass


class BodySizeLimit:
    """ASGI middleware: a body over `limit` bytes (declared or streamed) gets 413."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = PayloadTooLarge(f"request body over {self.limit} bytes", target="body")
        headers = dict(scope["headers"])
        length = headers.get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.limit:
            await error_response(too_large)(scope, receive, send)
            return
        content_type = headers.get(b"content-type", b"application/json").split(b";")[0].strip().lower()
        if int(length) and content_type != b"application/json":
            await error_response(UnsupportedMediaType(
                f"send JSON with Content-Type: application/json, not {content_type.decode(errors='replace')}",
                target="Content-Type"))(scope, receive, send)
            return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
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
                await error_response(too_large)(scope, receive, send)
