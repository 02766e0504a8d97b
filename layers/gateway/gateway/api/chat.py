"""POST /v1/chat/completions."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from gateway.api.auth import require_key
from gateway.api.body import read_json
from gateway.api.responses import JSON
from gateway.chat import service
from gateway.chat.validation import validate

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


async def create_chat_completion(request: Request) -> Response:
    key = await require_key(request)
    chat = validate(await read_json(request))
    reply = await service.handle(chat, key, request.state.request_id)
    if reply.stream is not None:
        return StreamingResponse(reply.stream, media_type="text/event-stream", headers={**SSE_HEADERS, **reply.headers})
    return JSON(reply.body, headers=reply.headers)


routes = [Route("/v1/chat/completions", create_chat_completion, methods=["POST"])]
