"""POST /v1/chat/completions."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from gateway.api.auth import require_key
from gateway.api.body import read_json
from gateway.api.responses import JSON
from gateway.chat import service
from gateway.chat.validation import validate
from gateway.errors import GatewayError

log = logging.getLogger("gateway.chat")

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


async def create_chat_completion(request: Request) -> Response:
    key = await require_key(request)
    chat = validate(await read_json(request))
    outcome = service.Outcome(model=chat.model)
    try:
        if chat.stream:
            body = await service.open_stream(chat, outcome)
            headers = {**SSE_HEADERS, "x-gateway-provider": outcome.provider or ""}
            return StreamingResponse(body, media_type="text/event-stream", headers=headers)
        result = await service.complete(chat, outcome)
        return JSON(result, headers={"x-gateway-provider": outcome.provider or ""})
    except GatewayError as exc:
        outcome.status, outcome.http_status, outcome.error = "error", exc.status, exc.message
        raise
    finally:
        if not chat.stream or outcome.status == "error":
            log.info(
                "chat %s",
                outcome.status,
                extra={
                    "key_id": key.key_id,
                    "model": chat.model,
                    "provider": outcome.provider,
                    "status": outcome.http_status,
                },
            )


routes = [Route("/v1/chat/completions", create_chat_completion, methods=["POST"])]
