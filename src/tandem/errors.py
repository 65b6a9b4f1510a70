"""Errors the server side raises; the api turns each into `{"error": {"code", "message", "target"}}`."""


class ApiError(Exception):
    """An error with an HTTP status, a stable code, a message for people and the field or object at fault."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, target: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.target = target

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "target": self.target}


class BadRequest(ApiError):
    status, code = 400, "bad_request"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class NotFound(ApiError):
    status, code = 404, "not_found"


class Conflict(ApiError):
    status, code = 409, "conflict"


class LeaseLost(Conflict):
    """A fenced write whose token is older than one the device saw for what it writes: its writer lost
    its lease (another took the work over)."""

    code = "lease_lost"


class PayloadTooLarge(ApiError):
    status, code = 413, "payload_too_large"


class BadGateway(ApiError):
    status, code = 502, "bad_gateway"


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported_media_type"


class Invalid(ApiError):
    status, code = 422, "validation_error"


class TooManyRequests(ApiError):
    """Refused for now: try again after `retry_after` seconds (sent as `Retry-After`)."""

    status, code = 429, "too_many_requests"

    def __init__(self, message: str, retry_after: float, target: str | None = None) -> None:
        super().__init__(message, target)
        self.retry_after = retry_after


class InsufficientStorage(ApiError):
    """The device cannot write its data (its disk is full, or failing): nothing was changed."""

    status, code = 507, "insufficient_storage"
