"""POST /v1/responses: the OpenAI Responses API on every catalog model, through the chat service.

The request is translated into the canonical chat request (wire/responses/) and validated
by the same `validate()`, so admission, routing, fallback, settlement, statistics and generation
records are exactly those of the chat completion it amounts to. Errors keep OpenAI's shape
(api/replies.py renders it for every /v1 path), with parameters named as the Responses request
spells them.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from gateway.api.auth import Key
from gateway.api.body import JSON_BODY, read_json
from gateway.api.chat import SSE_HEADERS
from gateway.api.replies import JSON
from gateway.chat import service
from gateway.config import settings
from gateway.errors import GatewayError
from gateway.wire.chat.request import validate
from gateway.wire.responses import answer
from gateway.wire.responses import stream as responses_stream
from gateway.wire.responses.request import translate
from gateway.wire.stream import render

router = APIRouter(tags=["responses"])


@router.post(
    "/v1/responses",
    summary="OpenAI's Responses API (stateless), whole or streamed, on any catalog model",
    openapi_extra=JSON_BODY("OpenAI's Responses request", "model", "input"),
)
async def create_response(request: Request, key: Key) -> Response:
    translation = translate(await read_json(request))
    try:
        chat = validate(translation.body)
        reply = await service.handle(chat, key, request.state.request_id)
    except GatewayError as exc:
        raise exc.located(translation.locate) from None
    if reply.stream is not None:
        events = render(reply.stream, responses_stream.Renderer(translation), settings().stream_keepalive)
        return StreamingResponse(events, media_type="text/event-stream", headers={**SSE_HEADERS, **reply.headers})
    assert reply.body is not None
    return JSON(answer.whole(reply.body, translation), headers=reply.headers)
