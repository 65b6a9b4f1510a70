"""Into the audit trail (`auth.audit`), once answered: each write asked of the API (POST, PUT, PATCH, DELETE), a
refused login, and any permission refused (403)."""

from starlette.types import ASGIApp, Receive, Scope, Send

from tandem.api.asgi import StatusSeen
from tandem.api.durability import READS
from tandem.auth.audit import AuditTrail

AGENT = "tandem-agent/"
"""How an agent's requests name it (`User-Agent: tandem-agent/HOST_ID`)."""


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
            if scope["method"] not in READS or seen.status == 403:
                self._record(scope, seen.status)

    def _record(self, scope: Scope, status: int) -> None:
        state = scope.get("state") or {}
        principal = state.get("principal")
        agent = dict(scope.get("headers") or ()).get(b"user-agent", b"").decode("latin-1")
        path = scope["path"]
        via = (f"agent {agent.removeprefix(AGENT)}" if agent.startswith(AGENT)
               else "batch" if path.startswith("/api/batch") else "api")
        route = getattr(scope.get("route"), "path", path)
        client = scope.get("client")
        self.trail.record(principal.username if principal else state.get("username", ""),
                          principal.role if principal else "", client[0] if client else "", via,
                          f"{scope['method']} {route}", path, status, state.get("refusal", "") if status >= 400 else "")
