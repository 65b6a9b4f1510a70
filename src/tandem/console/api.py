"""The device's own API, called in process: the console is one of its clients, so every read, write,
validation, refusal and audit record is the API's."""

from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

import httpx
from fastapi import Path
from starlette.types import ASGIApp

from tandem.models.fields import NAME_PATTERN

USER_AGENT = "tandem-console"
"""What the console's calls to the API say they are."""


@dataclass(frozen=True)
class Answer:
    """An answer of the API: its status and JSON body (None when it has none)."""

    status: int
    body: Any

    @property
    def ok(self) -> bool:
        return self.status < 400

    @property
    def message(self) -> str:
        """The API's error message (empty when it succeeded)."""
        if self.ok:
            return ""
        error = self.body.get("error") if isinstance(self.body, dict) else None
        return str(error.get("message", "")) if isinstance(error, dict) else f"the API answered {self.status}"

    @property
    def target(self) -> str | None:
        """The field or part of the request the API's error names."""
        error = self.body.get("error") if isinstance(self.body, dict) else None
        return error.get("target") if isinstance(error, dict) else None


NamePath = Annotated[str, Path(pattern=NAME_PATTERN)]
"""A partition's or an object's name in a console path, as the API's names go."""


def segment(value: str) -> str:
    """One path segment, quoted (`.` and `..` too: a client would otherwise take them as steps in the path)."""
    return value.replace(".", "%2E") if value in (".", "..") else quote(value, safe="")


class DeviceApi:
    """Calls the API application in process, as the browser's address (`source`: login back-off and the
    audit trail count it) with the session's token."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def call(self, method: str, path: str, token: str | None, source: str, body: Any = None,
                   params: dict[str, Any] | None = None) -> Answer:
        headers = {"User-Agent": USER_AGENT}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        transport = httpx.ASGITransport(app=self._app, client=(source, 0))
        async with httpx.AsyncClient(transport=transport, base_url="https://device", trust_env=False) as client:
            answer = await client.request(method, path, headers=headers, json=body, params=params)
        try:
            parsed = answer.json() if answer.content else None
        except ValueError:
            parsed = None
        return Answer(answer.status_code, parsed)
