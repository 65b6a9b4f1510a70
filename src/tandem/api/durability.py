"""Answers to writes leave once what they wrote is committed."""

from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

READS = frozenset({"GET", "HEAD", "OPTIONS"})


class DurableWrites:
    """ASGI middleware: the answer to a request that may write (POST, PUT, PATCH, DELETE) starts only once
    every write queued to the store's writer meanwhile is committed (a login's token, the trust domain's
    records, which are queued rather than awaited)."""

    def __init__(self, app: ASGIApp, flush: Callable[[], Awaitable[None]]) -> None:
        self.app = app
        self.flush = flush
        """Waits until the writes queued so far are committed (`Device.flush`)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in READS:
            await self.app(scope, receive, send)
            return

        async def send_when_durable(message: Message) -> None:
            if message["type"] == "http.response.start":
                await self.flush()
            await send(message)

        await self.app(scope, receive, send_when_durable)
