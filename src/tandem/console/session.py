"""Who uses the console: the session cookie that carries an API token (Secure, HttpOnly, SameSite=Strict,
only on /ui), the CSRF token every write must send, and the checks that refuse a write from elsewhere."""

import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request, Response

from tandem.auth import Principal
from tandem.console.api import DeviceApi
from tandem.errors import Forbidden
from tandem.models.api import CONSOLE_PATH

COOKIE = "__Secure-tandem_console"
"""The session cookie (`__Secure-`: browsers take it only over HTTPS, with `Secure`)."""
PATH = CONSOLE_PATH
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "_csrf"
MAX_FORM_BYTES = 64 * 1024
"""The largest form the console takes (its own forms are far smaller)."""
MAX_FORM_FIELDS = 32
FORM_TYPE = "application/x-www-form-urlencoded"


class NeedsLogin(Exception):
    """No session, or one the API no longer accepts: the browser goes to the login page."""


class Refused(Exception):
    """A write the console refuses before it reaches the API (no CSRF token, another origin, a body too large)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class ConsoleUser:
    """The signed-in user, as the API names them, with the session's token. What controls the pages show
    follows the user's rights (`Principal`); the API still decides each write."""

    token: str
    principal: Principal

    @property
    def username(self) -> str:
        return self.principal.username

    @property
    def role(self) -> str:
        return self.principal.role

    @property
    def csrf(self) -> str:
        return csrf_token(self.token)

    @property
    def is_admin(self) -> bool:
        return _allowed(self.principal.require_admin)

    def may_write(self, partition: str) -> bool:
        return _allowed(lambda: self.principal.require_write(partition))

    @property
    def writes_anywhere(self) -> bool:
        return self.is_admin or any(self.may_write(partition) for partition in self.principal.partitions)


def _allowed(check: Callable[[], None]) -> bool:
    try:
        check()
    except Forbidden:
        return False
    return True


def csrf_token(session_token: str) -> str:
    """The CSRF token of a session: derived from its secret token, which the page cannot read (HttpOnly) and
    another site cannot learn."""
    return hmac.new(b"tandem-console-csrf", session_token.encode(), hashlib.sha256).hexdigest()


def source(request: Request) -> str:
    return request.client.host if request.client else ""


def set_session(response: Response, token: str, expires_at: float) -> None:
    response.set_cookie(COOKIE, token, max_age=max(1, int(expires_at - time.time())), path=PATH, secure=True,
                        httponly=True, samesite="strict")


def end_session(response: Response) -> None:
    response.delete_cookie(COOKIE, path=PATH, secure=True, httponly=True, samesite="strict")


async def signed_in(request: Request, api: DeviceApi) -> ConsoleUser:
    """The user of the request's session, as the API knows them now; `NeedsLogin` otherwise."""
    token = request.cookies.get(COOKIE)
    if not token:
        raise NeedsLogin
    answer = await api.call("GET", "/api/auth/whoami", token, source(request))
    if answer.status == 401 or not answer.ok:
        raise NeedsLogin
    body = answer.body
    return ConsoleUser(token, Principal(body["username"], body["role"], tuple(body.get("partitions", ()))))


def check_origin(request: Request, required: bool = False) -> None:
    """Refuse a write whose Origin (browsers send it with every POST) is not this page's, or, when `required`
    (signing in, which has no session to hold a CSRF token yet), one that sends none."""
    origin = request.headers.get("origin")
    if origin is None and required:
        raise Refused(403, "refused: signing in needs the browser's Origin header")
    if origin is not None and origin != f"https://{request.headers.get('host', '')}":
        raise Refused(403, "refused: the request came from another site")


def check_body(request: Request) -> None:
    """Refuse, before it is read, a body that is not a form, of no stated length, or over `MAX_FORM_BYTES`."""
    length = request.headers.get("content-length")
    if length is None:
        if request.headers.get("transfer-encoding"):
            raise Refused(411, "refused: a form needs its length")
        return
    if not length.isdigit() or int(length) > MAX_FORM_BYTES:
        raise Refused(413, f"refused: a form is at most {MAX_FORM_BYTES // 1024} KiB")
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if int(length) and kind != FORM_TYPE:
        raise Refused(415, f"refused: the console takes forms ({FORM_TYPE})")


async def form_of(request: Request) -> dict[str, str]:
    """The request's form fields (a body `check_body` let through: small, urlencoded, no files)."""
    form = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS, max_part_size=MAX_FORM_BYTES)
    return {key: value for key, value in form.items() if isinstance(value, str)}


async def checked_write(request: Request, user: ConsoleUser) -> None:
    """Refuse a write without this session's CSRF token (header or form field) or from another origin."""
    check_origin(request)
    sent = request.headers.get(CSRF_HEADER) or (await form_of(request)).get(CSRF_FIELD)
    if sent is None or not hmac.compare_digest(sent, user.csrf):
        raise Refused(403, "refused: the form's security token is missing or wrong (reload the page)")
