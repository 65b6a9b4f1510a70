"""The OpenAPI document as the API behaves: every error in the `ErrorBody` shape, and on each operation
every status it answers, derived once from the route (its credentials, method, path, body and query)."""

from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts

from tandem.api.deps import principal
from tandem.models import ErrorBody

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
RIGHTS_FREE = frozenset({"/api/auth/login", "/api/auth/logout"})
"""Writes that need no right and change nothing shared: they never answer 403 or 409."""

DESCRIPTIONS = {
    400: "Bad request: the body is not JSON (malformed, not UTF-8, nested too deeply, a number too long), "
         "or a query parameter is wrong",
    401: "No valid credentials (`WWW-Authenticate: Bearer`)",
    403: "The caller's role may not do this",
    404: "No such object (or a path segment that cannot name one)",
    409: "Conflicts with the current state: exists already, in use, or not writable here",
    413: "The body is over 1 MiB",
    415: "The body is not `Content-Type: application/json`",
    422: "The request is not valid: `target` names the field at fault",
    429: "Too many failed logins from this address: try again after `Retry-After` seconds",
    502: "The other device or cluster did not answer as it should",
    503: "A process of this device (data plane, failover) is not running or did not answer: try again",
    507: "The device's disk is full: nothing was written",
}
ERROR_REF = {"$ref": f"#/components/schemas/{ErrorBody.__name__}"}
HEADERS = {401: "WWW-Authenticate", 429: "Retry-After"}


def _headers(status: int) -> dict[str, Any]:
    return {"headers": {HEADERS[status]: {"schema": {"type": "string"}}}} if status in HEADERS else {}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for statuses a route answers beyond those `statuses` derives (e.g. 502, 429)."""
    return {status: {"model": ErrorBody, "description": DESCRIPTIONS[status], **_headers(status)}
            for status in statuses}


def _authenticated(dependant: Dependant) -> bool:
    return any(d.call is principal or _authenticated(d) for d in dependant.dependencies)


def statuses(route: RouteContext, method: str, operation: dict[str, Any]) -> set[int]:
    """The error statuses an operation answers whatever its handler does: 401 and 429 (failed Basic logins
    backing off) with credentials; 422 and 507 for writes, and 403 and 409 but on login and logout; 404
    with a path parameter; 400, 413, 415 and 422 with a body; 400 with a query parameter."""
    found: set[int] = set()
    if _authenticated(route.dependant):
        found |= {401, 429}
    if method in WRITES:
        found |= {422, 507}
        if route.path_format not in RIGHTS_FREE:
            found |= {403, 409}
    if route.dependant.path_params or any(d.path_params for d in route.dependant.dependencies):
        found.add(404)
    if "requestBody" in operation:
        found |= {400, 413, 415, 422}
    if any(p.get("in") == "query" for p in operation.get("parameters", ())):
        found.add(400)
    return found


def _error_response(status: int) -> dict[str, Any]:
    return {"description": DESCRIPTIONS[status], "content": {"application/json": {"schema": ERROR_REF}},
            **_headers(status)}


def document(app: FastAPI) -> dict[str, Any]:
    """The document `app.openapi()` serves (built once): FastAPI's, with `ErrorBody` for every error
    status instead of its own `HTTPValidationError`."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    error_schema = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(error_schema.pop("$defs", {}))
    components[ErrorBody.__name__] = error_schema
    for route in iter_route_contexts(app.routes):
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            continue
        for method in route.methods:
            operation = schema["paths"][route.path_format][method.lower()]
            responses = operation["responses"]
            if "HTTPValidationError" in str(responses.get("422")):
                del responses["422"]
            for status in sorted(statuses(route, method, operation)):
                responses.setdefault(str(status), _error_response(status))
    app.openapi_schema = schema
    return schema


def install(app: FastAPI) -> None:
    """Serve `document(app)` as the app's OpenAPI document."""
    app.openapi = lambda: document(app)  # type: ignore[method-assign]
