"""Into the audit trail (`auth.audit`), once answered: each write of an authenticated caller (POST, PUT, PATCH,
DELETE), each login (`/api/auth/login`, refused or not) and each Basic login refused (401), and any permission
refused (403). A request without valid credentials is recorded only as such a login attempt, which the login
throttle bounds: anything else of an unauthenticated caller is not, so that it cannot fill the trail.

`via` is what the client says it is (`User-Agent`); who asked is what it authenticated as."""

import base64
import binascii

from starlette.types import ASGIApp, Receive, Scope, Send

from tandem.api.asgi import StatusSeen
from tandem.api.durability import READS
from tandem.auth.audit import AuditTrail

LOGIN = "/api/auth/login"
AGENT = "tandem-agent/"
"""How an agent's requests name it (`User-Agent: tandem-agent/HOST_ID`)."""


def _basic_user(authorization: bytes) -> str | None:
    """The user named by Basic credentials (None: none given, or not Basic)."""
    scheme, _, value = authorization.partition(b" ")
    if scheme.lower() != b"basic":
        return None
    try:
        return base64.b64decode(value.strip(), validate=True).decode().partition(":")[0]
    except (binascii.Error, UnicodeDecodeError):
        return ""


class AuditWrites:
    """ASGI middleware: records what the audit trail keeps, with who asked (the principal the request was
    authenticated as, else the user a login named), from where, how, and the status answered."""

    def __init__(self, app: ASGIApp, trail: AuditTrail) -> None:
        self.app = app
        self.trail = trail

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        seen = StatusSeen(send)
        try:
            await self.app(scope, receive, seen)
        finally:
            self._record(scope, seen.status)

    def _record(self, scope: Scope, status: int) -> None:
        state = scope.get("state") or {}
        principal = state.get("principal")
        headers = dict(scope.get("headers") or ())
        basic_user = _basic_user(headers.get(b"authorization", b""))
        if principal is not None:
            if scope["method"] in READS and status != 403:
                return
        elif not (scope["path"] == LOGIN or (status == 401 and basic_user is not None)):
            return
        agent = headers.get(b"user-agent", b"").decode("latin-1")
        path = scope["path"]
        via = (f"agent {agent.removeprefix(AGENT)}" if agent.startswith(AGENT)
               else "batch" if path.startswith("/api/batch") else "api")
        route = getattr(scope.get("route"), "path", path)
        client = scope.get("client")
        self.trail.record(principal.username if principal else state.get("username", basic_user or ""),
                          principal.role if principal else "", client[0] if client else "", via,
                          f"{scope['method']} {route}", path, status, state.get("refusal", "") if status >= 400 else "")
