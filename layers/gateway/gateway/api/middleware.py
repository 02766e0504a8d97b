"""Pure ASGI middleware (no BaseHTTPMiddleware, which would buffer and slow streams)."""

from __future__ import annotations

import uuid

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def _request_id(scope: Scope) -> str:
    """API Gateway's request id when there is one (Mangum or the Web Adapter), so logs join up."""
    event = scope.get("aws.event")
    if isinstance(event, dict):
        rid = (event.get("requestContext") or {}).get("requestId")
        if rid:
            return str(rid)
    for name, value in scope.get("headers", ()):
        if name == b"x-amzn-request-context":
            try:
                rid = orjson.loads(value).get("requestId")
            except (orjson.JSONDecodeError, AttributeError):
                rid = None
            if rid:
                return str(rid)
    return f"req_{uuid.uuid4().hex}"


class RequestId:
    """Gives every request an id (in scope state and the `x-request-id` response header)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = rid
        header = (b"x-request-id", rid.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        await self.app(scope, receive, send_with_id)
