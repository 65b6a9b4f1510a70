"""Refuse request bodies that are not JSON, or declare a size over the limit, before they are read.

(A streamed body that grows past the limit is stopped by FastAPI's own `max_body_size`, set in `app.py`.)
"""

from starlette.types import ASGIApp, Receive, Scope, Send

from tandem.api.responses import error_response
from tandem.errors import PayloadTooLarge, UnsupportedMediaType

MAX_BODY_BYTES = 1 << 20


class JsonBodies:
    """ASGI middleware: a body must be `Content-Type: application/json` (else 415) and within the limit (else 413)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            length = headers.get(b"content-length", b"0")
            if not length.isdigit() or int(length) > MAX_BODY_BYTES:
                too_large = PayloadTooLarge(f"request body over {MAX_BODY_BYTES} bytes", target="body")
                await error_response(too_large)(scope, receive, send)
                return
            has_body = headers.get(b"content-length", b"0") != b"0" or b"transfer-encoding" in headers
            content_type = headers.get(b"content-type", b"application/json").split(b";")[0].strip().lower()
            if has_body and content_type != b"application/json":
                error = UnsupportedMediaType(f"send JSON with Content-Type: application/json, not "
                                             f"{content_type.decode(errors='replace')}", target="Content-Type")
                await error_response(error)(scope, receive, send)
                return
        await self.app(scope, receive, send)
