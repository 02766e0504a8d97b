"""POST /v1/responses: the OpenAI Responses API on every catalog model, through the chat service.

The request is translated into the canonical chat request (protocols/responses.py) and validated
by the same `validate()`, so admission, routing, fallback, settlement, statistics and generation
records are exactly those of the chat completion it amounts to. Errors keep OpenAI's shape
(api/responses.py renders it for every /v1 path), with parameters named as the Responses request
spells them.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from gateway.api.auth import require_key
from gateway.api.body import read_json
from gateway.api.chat import SSE_HEADERS
from gateway.api.responses import JSON
from gateway.chat import service
from gateway.chat.validation import validate
from gateway.errors import GatewayError
from gateway.protocols import responses


async def create_response(request: Request) -> Response:
    await require_key(request)
    translation = responses.translate(await read_json(request))
    try:
        chat = validate(translation.body)
        reply = await service.handle(chat, request.state.key, request.state.request_id)
    except GatewayError as exc:
        raise translation.rename(exc) from None
    if reply.stream is not None:
        events = responses.sse(reply.stream, translation)
        return StreamingResponse(events, media_type="text/event-stream", headers={**SSE_HEADERS, **reply.headers})
    assert reply.body is not None
    return JSON(responses.whole(reply.body, translation), headers=reply.headers)


routes = [Route("/v1/responses", create_response, methods=["POST"])]
