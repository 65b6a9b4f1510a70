"""JSON responses, errors included, encoded with orjson."""

from typing import Any

import orjson
from fastapi.responses import Response

from tandem.errors import ApiError


class JSON(Response):
    """A JSON response encoded with orjson (datetimes as ISO 8601)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(error: ApiError) -> JSON:
    headers = {"WWW-Authenticate": 'Bearer realm="tandem"'} if error.status == 401 else None
    return JSON({"error": error.to_dict()}, status_code=error.status, headers=headers)
