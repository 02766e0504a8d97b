"""GET /v1/key: what the caller's key is (OpenRouter-style); usage and statistics build on it."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.api.auth import require_key
from gateway.api.responses import JSON


async def key_info(request: Request) -> Response:
    key = await require_key(request)
    return JSON(
        {
            "data": {
                "label": key.prefix,
                "key_id": key.key_id,
                "name": key.name,
                "owner": key.owner,
                "status": key.status,
                "created_at": key.created_at,
            }
        }
    )


routes = [Route("/v1/key", key_info, methods=["GET"])]
