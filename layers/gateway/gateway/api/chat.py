"""POST /v1/chat/completions, and seed 002's unified route POST /api/chat (and /api/chat.php)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from gateway.api.auth import require_key
from gateway.api.body import read_json
from gateway.api.responses import JSON
from gateway.chat import service
from gateway.chat.validation import validate
from gateway.protocols import chat_completions
from gateway.routing.resolve import by_model_id

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


async def _respond(request: Request, body: Any) -> Response:
    key = request.state.key
    chat = validate(body)
    reply = await service.handle(chat, key, request.state.request_id)
    if reply.stream is not None:
        stream = chat_completions.sse(reply.stream, chat.include_usage)
        return StreamingResponse(stream, media_type="text/event-stream", headers={**SSE_HEADERS, **reply.headers})
    return JSON(reply.body, headers=reply.headers)


async def create_chat_completion(request: Request) -> Response:
    await require_key(request)
    return await _respond(request, await read_json(request))


async def unified_chat(request: Request) -> Response:
    """Seed 002: `model_id` (a catalog number, or null for automatic routing) and streaming by default."""
    await require_key(request)
    body = await read_json(request)
    if isinstance(body, dict):
        if "model" not in body:
            body = {**body, "model": by_model_id(body.get("model_id"))}
        body.setdefault("stream", True)
    return await _respond(request, body)


routes = [
    Route("/v1/chat/completions", create_chat_completion, methods=["POST"]),
    Route("/api/chat", unified_chat, methods=["POST"]),
    Route("/api/chat.php", unified_chat, methods=["POST"]),
]
