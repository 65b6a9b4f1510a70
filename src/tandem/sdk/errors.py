"""TandemError: the one exception type the SDK raises; with pylxd's names for its kinds (`LXDAPIException`, an answer
of the device, with `.response`; `NotFound`, 404; `Conflict`, 409), so that `except NotFound:` ports."""

from typing import Any, Protocol

import orjson

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    422: "validation_error",
}


class _Answer(Protocol):
    status_code: int
    reason_phrase: str
    content: bytes

    @property
    def text(self) -> str: ...


class TandemError(Exception):
    """An error from the device (`status_code` set) or on the client side (`status_code` None).

    `code` is the machine-readable reason (`not_found`, `conflict`, `connection_error`, ...),
    `message` the human one, `target` the field or object at fault when known.
    """

    def __init__(self, status_code: int | None, code: str, message: str, target: str | None = None) -> None:
        super().__init__(status_code, code, message, target)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.target = target

    def __str__(self) -> str:
        head = f"{self.status_code} {self.code}" if self.status_code else self.code
        tail = f" (target: {self.target})" if self.target else ""
        return f"{head}: {self.message}{tail}"

    def __repr__(self) -> str:
        return (
            f"TandemError(status_code={self.status_code!r}, code={self.code!r}, "
            f"message={self.message!r}, target={self.target!r})"
        )

    @classmethod
    def from_response(cls, response: _Answer) -> "TandemError":
        """Build the error from a 4xx/5xx answer: the API's error body, else whatever it sent. It is a
        `NotFound` for a 404, a `Conflict` for a 409, else an `LXDAPIException`; `.response` is the answer."""
        kind = {404: NotFound, 409: Conflict}.get(response.status_code, LXDAPIException)
        error = kind._parsed(response)
        error.response = response
        return error

    @classmethod
    def _parsed(cls, response: _Answer) -> "TandemError":
        status = response.status_code
        code = _CODES.get(status, "server_error" if status >= 500 else "http_error")
        try:
            body: Any = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            body = None
        if isinstance(body, dict):
            error = body.get("error")
            if isinstance(error, dict) and "message" in error:
                target = error.get("target")
                return cls(
                    status,
                    str(error.get("code") or code),
                    str(error["message"]),
                    None if target is None else str(target),
                )
            detail = body.get("detail")
            if detail is not None:
                return cls(status, code, *_from_detail(detail))
        text = response.text.strip()[:500] or response.reason_phrase or "no details"
        return cls(status, code, text)



class LXDAPIException(TandemError):
    """An error the device answered (pylxd's name): `.response` is the answer (`status_code`, `content`, `text`)."""

    response: _Answer | None = None


class NotFound(LXDAPIException):
    """The device has no such object (404)."""


class Conflict(LXDAPIException):
    """The object exists already, or the change conflicts with the device's state (409)."""

def _from_detail(detail: Any) -> tuple[str, str | None]:
    """Message and target out of a framework-style `{"detail": ...}` body."""
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        first = detail[0]
        loc = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path")]
        return str(first.get("msg", detail)), ".".join(loc) or None
    return str(detail), None
