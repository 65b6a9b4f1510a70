"""Who uses the console: the session cookie that carries an API token (Secure, HttpOnly, SameSite=Strict,
only on /ui), the CSRF token every write must send, and the checks that refuse a write from elsewhere."""

import hashlib
import hmac
import time
from dataclasses import dataclass

from fastapi import Request, Response

from tandem.console.api import DeviceApi
from tandem.models.api import CONSOLE_PATH

COOKIE = "tandem_console"
PATH = CONSOLE_PATH
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "_csrf"
MAX_FORM_BYTES = 64 * 1024
"""The largest form the console takes (its own forms are far smaller)."""


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
    """The signed-in user, as the API names them, with the session's token and CSRF token."""

    token: str
    username: str
    role: str
    partitions: tuple[str, ...]

    @property
    def csrf(self) -> str:
        return csrf_token(self.token)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def may_write(self, partition: str) -> bool:
        """Whether the API would let this user change objects in `partition` (controls are shown only then;
        the API still decides)."""
        return self.is_admin or (self.role == "manager" and partition in self.partitions)

    @property
    def writes_anywhere(self) -> bool:
        return self.is_admin or (self.role == "manager" and bool(self.partitions))


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
    return ConsoleUser(token, body["username"], body["role"], tuple(body.get("partitions", ())))


def check_origin(request: Request) -> None:
    """Refuse a write whose Origin (sent by browsers with every POST) is not this page's."""
    origin = request.headers.get("origin")
    host = request.headers.get("host", "")
    if origin is not None and origin != f"https://{host}":
        raise Refused(403, "refused: the request came from another site")


async def check_form_size(request: Request) -> None:
    length = request.headers.get("content-length")
    if length is None and request.headers.get("transfer-encoding"):
        raise Refused(411, "refused: a form needs its length")
    if length is not None and (not length.isdigit() or int(length) > MAX_FORM_BYTES):
        raise Refused(413, f"refused: a form is at most {MAX_FORM_BYTES // 1024} KiB")


async def checked_write(request: Request, user: ConsoleUser) -> None:
    """Refuse a write without this session's CSRF token (header or form field) or from another origin."""
    check_origin(request)
    await check_form_size(request)
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        form = await request.form()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if sent is None or not hmac.compare_digest(sent, user.csrf):
        raise Refused(403, "refused: the form's security token is missing or wrong (reload the page)")
