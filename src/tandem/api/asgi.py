"""What ASGI middlewares of the API share."""

from starlette.types import Message, Send


class StatusSeen:
    """A `send` that notes the status of the answer it passes on (500 until one starts: the app raised)."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.status = 500

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        await self._send(message)
