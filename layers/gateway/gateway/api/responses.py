"""JSON responses through orjson, and the one place an error becomes an HTTP response."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from gateway.errors import GatewayError


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(error: GatewayError) -> JSON:
    return JSON(error.body(), status_code=error.status, headers=error.headers)
