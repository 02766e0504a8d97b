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


INTERNAL_ERROR = orjson.dumps(
    {
        "error": {
            "message": "The gateway had an internal error. Please retry.",
            "type": "server_error",
            "param": None,
            "code": "internal_error",
        }
    }
)


class RequestId:
    """Gives every request an id (in scope state and the `x-request-id` response header).

    It also turns an unexpected exception into the OpenAI-shaped 500: Starlette's own catch-all
    runs outside every middleware, so its response would go out without the id.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = rid
        header = (b"x-request-id", rid.encode())

        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            if started:
                raise  # a stream already under way: the server can only cut it
            from gateway.telemetry import logger

            logger.exception("unhandled error", extra={"request_id": rid, "path": scope.get("path")})
            headers = [(b"content-type", b"application/json"), header, (b"content-length", b"%d" % len(INTERNAL_ERROR))]
            await send({"type": "http.response.start", "status": 500, "headers": headers})
            await send({"type": "http.response.body", "body": INTERNAL_ERROR})


EXPOSED = (
    "x-request-id, x-ratelimit-limit-requests, x-ratelimit-remaining-requests, x-ratelimit-reset-requests, "
    "x-ratelimit-limit-tokens, x-ratelimit-remaining-tokens, x-ratelimit-reset-tokens, retry-after, "
    "retry-after-ms, x-gateway-cost, x-gateway-model, x-gateway-provider"
)


class Cors:
    """Browsers on another origin may call the API: CORS_ALLOW_ORIGIN (the template's parameter) is
    added to every response, and preflights are answered here where API Gateway does not (locally)."""

    def __init__(self, app: ASGIApp, origin: str) -> None:
        self.app = app
        self.origin = origin.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = [(b"access-control-allow-origin", self.origin), (b"access-control-expose-headers", EXPOSED.encode())]
        asked = dict(scope["headers"])
        if scope["method"] == "OPTIONS" and b"access-control-request-method" in asked:
            preflight = [
                (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
                # the SDKs send x-stainless-* headers; echoing what the browser asks for allows them all
                (b"access-control-allow-headers", asked.get(b"access-control-request-headers", b"authorization")),
                (b"access-control-max-age", b"600"),
            ]
            await send({"type": "http.response.start", "status": 204, "headers": headers + preflight})
            await send({"type": "http.response.body", "body": b""})
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *headers]
            await send(message)

        await self.app(scope, receive, send_with_cors)
