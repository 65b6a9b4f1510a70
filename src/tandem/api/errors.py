"""Every failure becomes `{"error": {"code", "message", "target"}}` with the right status."""

import logging
import sys

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException

from tandem.api.limits import OVER_LIMIT, too_large_error
from tandem.api.responses import JSON, error_response
from tandem.config.validation import invalid_from_detail
from tandem.errors import ApiError, BadRequest, NotFound

log = logging.getLogger("tandem.api")

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized", 403: "forbidden",
               413: "payload_too_large"}


def unparsable_body(cause: BaseException) -> BadRequest:
    """The body the framework could not parse as JSON (it raises a bare 400 from `cause`)."""
    if isinstance(cause, UnicodeDecodeError):
        reason = "the body is not UTF-8"
    elif isinstance(cause, RecursionError):
        reason = "the body's JSON is nested too deeply"
    elif isinstance(cause, ValueError):
        reason = f"a number in the body has over {sys.get_int_max_str_digits()} digits"
    else:
        reason = "the body could not be read as JSON"
    return BadRequest(f"malformed JSON: {reason}", target="body")


def allowed_methods(request: Request) -> str:
    """The methods the routes of the request's path answer (for `Allow` on a 405)."""
    path = request.scope["path"]
    methods = {method for route in iter_route_contexts(request.app.routes) if route.methods and route.path_regex
               and route.path_regex.match(path) for method in route.methods}
    return ", ".join(sorted(methods))


def install(app: FastAPI) -> None:
    """Register the handlers that shape error responses."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSON:
        request.state.refusal = error.message  # the audit trail says why
        return error_response(error)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, error: RequestValidationError) -> JSON:
        detail = error.errors()[0]
        if detail.get("type") == "json_invalid":
            return error_response(BadRequest(f"malformed JSON: {detail.get('ctx', {}).get('error', 'invalid')}",
                                             target="body"))
        loc = tuple(detail.get("loc", ()))
        where, rest = (loc[0], loc[1:]) if loc else ("body", ())
        if where == "body" and not rest and detail.get("type") in ("model_attributes_type", "dict_type", "missing"):
            return error_response(BadRequest("the body must be a JSON object", target="body"))
        if where == "path" and rest:
            return error_response(NotFound(f"no {rest[0]} {detail.get('input')!r}: not a valid {rest[0]}",
                                           target=str(rest[0])))
        if where == "query":
            return error_response(BadRequest(invalid_from_detail({**detail, "loc": rest}).message,
                                             target=".".join(map(str, rest))))
        return error_response(invalid_from_detail({**detail, "loc": rest}))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSON:
        if request.scope.get(OVER_LIMIT):
            return error_response(too_large_error())
        if error.status_code == 400 and error.__cause__ is not None:
            return error_response(unparsable_body(error.__cause__))
        code = _HTTP_CODES.get(error.status_code, "error")
        message = "no such resource" if error.status_code == 404 else str(error.detail)
        headers = {"Allow": allowed_methods(request)} if error.status_code == 405 else None
        return JSON({"error": {"code": code, "message": message, "target": None}}, status_code=error.status_code,
                    headers=headers)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, error: Exception) -> JSON:
        log.exception("unexpected error")
        return JSON({"error": {"code": "internal_error", "message": "internal error; see the device log",
                               "target": None}}, status_code=500)
