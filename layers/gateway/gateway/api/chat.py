"""POST /v1/chat/completions, and the unified API's route POST /api/chat (and /api/chat.php)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from gateway.api.auth import Key
from gateway.api.body import JSON_BODY, read_json
from gateway.api.replies import JSON
from gateway.chat import service
from gateway.config import settings
from gateway.routing.resolve import by_model_id
from gateway.wire.chat import stream as chat_stream
from gateway.wire.chat.request import validate
from gateway.wire.stream import render

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


router = APIRouter(tags=["chat"])


async def _respond(request: Request, key: Key, body: Any) -> Response:
    chat = validate(body)
    reply = await service.handle(chat, key, request.state.request_id)
    if reply.stream is not None:
        stream = render(reply.stream, chat_stream.Renderer(chat.include_usage), settings().stream_keepalive)
        return StreamingResponse(stream, media_type="text/event-stream", headers={**SSE_HEADERS, **reply.headers})
    return JSON(reply.body, headers=reply.headers)


@router.post(
    "/v1/chat/completions",
    summary="OpenAI's chat completions, whole or streamed, on any catalog model",
    openapi_extra=JSON_BODY("OpenAI's CreateChatCompletionRequest", "model", "messages"),
)
async def create_chat_completion(request: Request, key: Key) -> Response:
    return await _respond(request, key, await read_json(request))


@router.post(
    "/chat",
    summary="The unified API's chat: `model_id` instead of `model`, streamed unless `stream` is false",
    openapi_extra=JSON_BODY("A chat completion request with `model_id` (a catalog number or null)", "messages"),
)
@router.post("/chat.php", summary="The unified API's chat, under its .php name", openapi_extra=JSON_BODY(None))
@router.post(
    "/chat", summary="The unified API's chat, as deployed (the stage `api` is the prefix)", include_in_schema=False
)
@router.post("/chat.php", summary="The unified API's chat, under its .php name, as deployed", include_in_schema=False)
async def unified_chat(request: Request, key: Key) -> Response:
    """The unified API: `model_id` (a catalog number, or null for automatic routing) and streaming by default."""
    body = await read_json(request)
    if isinstance(body, dict):
        if "model" not in body:
            body = {**body, "model": by_model_id(body.get("model_id"))}
        body.setdefault("stream", True)
    return await _respond(request, key, body)
