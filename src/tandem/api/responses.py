"""JSON responses, errors included, encoded with orjson."""

import math
from typing import Any

import orjson
from fastapi.responses import JSONResponse

from tandem.errors import ApiError, TooManyRequests


class JSON(JSONResponse):
    """A JSON response encoded with orjson (datetimes as ISO 8601); a `JSONResponse`, so that the OpenAPI
    document describes its body by the route's response model."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(error: ApiError) -> JSON:
    headers = {"WWW-Authenticate": 'Bearer realm="tandem"'} if error.status == 401 else None
    if isinstance(error, TooManyRequests):
        headers = {"Retry-After": str(math.ceil(error.retry_after))}
    return JSON({"error": error.to_dict()}, status_code=error.status, headers=headers)
