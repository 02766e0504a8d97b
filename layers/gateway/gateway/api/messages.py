"""POST /v1/messages and /v1/messages/count_tokens: Anthropic's Messages API on every catalog model.

The request is translated into the canonical chat request (wire/anthropic/request_in.py) and validated
by the same `validate()`, so admission, routing, fallback, settlement, statistics and generation
records are exactly those of the chat completion it amounts to. Errors take Anthropic's shape
(api/responses.py renders it for every /v1/messages path), naming the fields as the caller
sent them. The key comes as `x-api-key` or `Authorization: Bearer`; `anthropic-version` and
`anthropic-beta` are accepted and need nothing.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from gateway.accounts import admission, plans
from gateway.api.auth import Key
from gateway.api.body import JSON_BODY, read_json
from gateway.api.chat import SSE_HEADERS
from gateway.api.replies import JSON
from gateway.chat import egress, service
from gateway.config import settings
from gateway.errors import GatewayError
from gateway.routing.resolve import resolve
from gateway.wire.anthropic import answer, request_in
from gateway.wire.anthropic import stream as anthropic_stream
from gateway.wire.chat.request import validate
from gateway.wire.stream import render

router = APIRouter(tags=["anthropic"])


def _located(error: GatewayError, body: Any) -> GatewayError:
    """The error with its canonical parameter (`messages[3].content[0]`) named as the caller sent it."""
    return error.located(lambda param: request_in.origin(body, param)) if isinstance(body, dict) else error


@router.post(
    "/v1/messages",
    summary="Anthropic's Messages API, whole or streamed, on any catalog model",
    openapi_extra=JSON_BODY("Anthropic's Messages request", "model", "messages", "max_tokens"),
)
async def create_message(request: Request, key: Key) -> Response:
    body = await read_json(request)
    canonical = request_in.to_canonical(body, beta=request.headers.get("anthropic-beta"))
    headers = {"request-id": request.state.request_id}  # where Anthropic's SDKs look for it
    try:
        chat = validate(canonical)
        reply = await service.handle(chat, key, request.state.request_id)
    except GatewayError as exc:
        raise _located(exc, body) from None
    headers.update(reply.headers)
    if reply.stream is not None:
        events = render(reply.stream, anthropic_stream.Renderer(canonical), settings().stream_keepalive)
        return StreamingResponse(events, media_type="text/event-stream", headers={**SSE_HEADERS, **headers})
    assert reply.body is not None
    return JSON(answer.message(reply.body, canonical.get("stop") or []), headers=headers)


@router.post(
    "/v1/messages/count_tokens",
    summary="Anthropic's token count: an estimate, never billed, counted against the key's requests a minute",
    openapi_extra=JSON_BODY("Anthropic's Messages request, without max_tokens", "model", "messages"),
)
async def count_tokens(request: Request, key: Key) -> Response:
    """`{"input_tokens": N}`: tokens.py's estimate (the gateway has no tokenizer), never billed.

    Each call counts against the key's requests a minute (a 429 past it): counting costs CPU.

    `x-gateway-prompt-bound` adds the most the prompt may count when admitted (chat/egress.py's
    sound bound, the largest over the model's providers): what a reservation holds for it.
    """
    body = await read_json(request)
    plan = plans.effective(key.record)
    await admission.count(key.key_id, plan)
    canonical = request_in.to_canonical(body, counting=True)
    try:
        chat = validate(canonical)
        found = resolve(chat.body, plan.allows)
        bound = max(offer.prompt for offer in egress.offers(chat.body, found, 1, False))
    except GatewayError as exc:
        raise _located(exc, body) from None
    headers = {"request-id": request.state.request_id, "x-gateway-prompt-bound": str(bound)}
    return JSON({"input_tokens": request_in.estimate(canonical)}, headers=headers)
