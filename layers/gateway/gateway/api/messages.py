"""POST /v1/messages and /v1/messages/count_tokens: Anthropic's Messages API on every catalog model.

The request is translated into the canonical chat request (protocols/messages.py) and validated
by the same `validate()`, so admission, routing, fallback, settlement, statistics and generation
records are exactly those of the chat completion it amounts to. Errors take Anthropic's shape
(api/responses.py renders it for every /v1/messages path), naming the fields as the caller
sent them. The key comes as `x-api-key` or `Authorization: Bearer`; `anthropic-version` and
`anthropic-beta` are accepted and need nothing.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from gateway.accounts import plans
from gateway.api.auth import require_key
from gateway.api.body import read_json
from gateway.api.chat import SSE_HEADERS
from gateway.api.responses import JSON
from gateway.chat import egress, service
from gateway.chat.validation import validate
from gateway.errors import GatewayError
from gateway.protocols import messages
from gateway.routing.resolve import resolve


def _located(error: GatewayError, body: Any) -> GatewayError:
    """The error with its canonical parameter (`messages[3].content[0]`) named as the caller sent it."""
    if error.param and isinstance(body, dict):
        named = messages.origin(body, error.param)
        if named != error.param:
            error.message = error.message.replace(f"'{error.param}'", f"'{named}'")
            error.param = named
    return error


async def create_message(request: Request) -> Response:
    await require_key(request)
    body = await read_json(request)
    canonical = messages.to_canonical(body)
    headers = {"request-id": request.state.request_id}  # where Anthropic's SDKs look for it
    try:
        chat = validate(canonical)
        reply = await service.handle(chat, request.state.key, request.state.request_id)
    except GatewayError as exc:
        raise _located(exc, body) from None
    headers.update(reply.headers)
    if reply.stream is not None:
        events = messages.sse(reply.stream, canonical)
        return StreamingResponse(events, media_type="text/event-stream", headers={**SSE_HEADERS, **headers})
    assert reply.body is not None
    return JSON(messages.message(reply.body, canonical.get("stop") or []), headers=headers)


async def count_tokens(request: Request) -> Response:
    """`{"input_tokens": N}`: tokens.py's estimate (the gateway has no tokenizer), never billed.

    `x-gateway-prompt-bound` adds the most the prompt may count when admitted (chat/egress.py's
    sound bound, the largest over the model's providers): what a reservation holds for it.
    """
    key = await require_key(request)
    body = await read_json(request)
    canonical = messages.to_canonical(body, counting=True)
    try:
        chat = validate(canonical)
        found = resolve(chat.body, plans.effective(key.record).allows)
        bound = max(offer.prompt for offer in egress.offers(chat.body, found, 1, False))
    except GatewayError as exc:
        raise _located(exc, body) from None
    headers = {"request-id": request.state.request_id, "x-gateway-prompt-bound": str(bound)}
    return JSON({"input_tokens": messages.estimate(canonical)}, headers=headers)


routes = [
    Route("/v1/messages", create_message, methods=["POST"]),
    Route("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
]
