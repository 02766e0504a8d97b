"""JSON responses through orjson, and the one place an error becomes an HTTP response, in its protocol's shape.

Each protocol's clients parse errors their own way: OpenAI's `{"error": {message, type, param,
code}}` (chat completions, Responses, the gateway's own routes), Anthropic's `{"type": "error",
"error": {type, message}}` on /v1/messages, and the unified API's `{"error": message, "code":
status, "retry_after": seconds}` (shared/seeds/002) on /api/chat, /api/models and /api/stats.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from gateway.errors import GatewayError
from gateway.wire.anthropic import errors


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


# The unified API's paths (under the stage `api` deployed, and under /api locally: middleware.StagePrefix).
UNIFIED_PREFIXES = ("/chat", "/models", "/stats")


def error_body(error: GatewayError, path: str = "") -> dict[str, Any]:
    """The error as the protocol served at `path` writes it."""
    if path.startswith(("/v1/messages", "/api/v1/messages")):
        return {
            "type": "error",
            "error": {"type": errors.TYPES.get(error.status, "api_error"), "message": error.message},
        }
    if path.startswith(UNIFIED_PREFIXES):
        body: dict[str, Any] = {"error": error.message, "code": error.status}
        if error.param:
            body["param"] = error.param  # beyond the unified API's shape: which field to fix
        retry = error.headers.get("Retry-After")
        if retry and retry.isdigit():
            body["retry_after"] = int(retry)
        return body
    return error.body()


def error_response(error: GatewayError, path: str = "") -> JSON:
    return JSON(error_body(error, path), status_code=error.status, headers=error.headers)
