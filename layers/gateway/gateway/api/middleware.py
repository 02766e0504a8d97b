"""Pure ASGI middleware (no BaseHTTPMiddleware, which would buffer and slow streams)."""

from __future__ import annotations

import sys
import uuid
from typing import Any

import orjson
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import GatewayError

MAX_REQUEST_ID = 128
_PRINTABLE = frozenset(range(0x20, 0x7F))


def _clean_id(value: Any) -> str | None:
    """A caller-supplied id fit for a response header and a log line, or None.

    Locally anyone can send `x-amzn-request-context`; an id with CR/LF, non-ASCII or kilobytes of
    text would be an invalid header value, and the server would drop the connection instead of answering.
    """
    if not isinstance(value, str):
        return None  # API Gateway's ids are strings
    rid = "".join(c for c in value if ord(c) in _PRINTABLE).strip()
    return rid if 0 < len(rid) <= MAX_REQUEST_ID else None


def _request_id(scope: Scope) -> str:
    """API Gateway's request id when there is one (Mangum or the Web Adapter), so logs join up."""
    event = scope.get("aws.event")
    if isinstance(event, dict):
        context = event.get("requestContext")
        rid = _clean_id(context.get("requestId")) if isinstance(context, dict) else None
        if rid:
            return rid
    for name, value in scope.get("headers", ()):
        if name == b"x-amzn-request-context":
            try:
                context = orjson.loads(value)
            except orjson.JSONDecodeError:
                context = None
            rid = _clean_id(context.get("requestId")) if isinstance(context, dict) else None
            if rid:
                return rid
    return f"req_{uuid.uuid4().hex}"


def _storage_failure(exc: BaseException) -> bool:
    """A DynamoDB failure (throttled, unreachable, timed out) that reached no handler of its own.

    The request path's client raises StoreError; boto3's errors (the statistics reads) are checked by
    module rather than imported: botocore.exceptions costs tens of milliseconds to import, and an app
    that never loaded it (the chat and models functions) cannot raise one.
    """
    from gateway.storage.ops import StoreError

    if isinstance(exc, StoreError):
        return True
    module = sys.modules.get("botocore.exceptions")
    return module is not None and isinstance(exc, module.ClientError | module.BotoCoreError)


INTERNAL_ERROR = GatewayError(
    500, "The gateway had an internal error. Please retry.", type="server_error", code="internal_error"
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
        except ClientDisconnect:  # the caller hung up while sending; nobody is left to answer
            from gateway.telemetry import logger

            logger.info("client disconnected", extra={"request_id": rid, "path": scope.get("path")})
        except Exception as exc:
            if started:
                raise  # a stream already under way: the server can only cut it
            from gateway.telemetry import logger

            if _storage_failure(exc):
                await self._storage_unavailable(exc, scope, receive, send_with_id, rid)
                return
            logger.exception("unhandled error", extra={"request_id": rid, "path": scope.get("path")})
            from gateway.api.replies import error_response

            await error_response(INTERNAL_ERROR, scope.get("path", ""))(scope, receive, send_with_id)

    @staticmethod
    async def _storage_unavailable(exc: Exception, scope: Scope, receive: Receive, send: Send, rid: str) -> None:
        """The account/key store failed on any route: a 503 the SDKs retry by themselves, not a 500."""
        from gateway.api.replies import error_response
        from gateway.errors import retry_soon
        from gateway.telemetry import logger

        error = getattr(exc, "response", None)
        code = getattr(exc, "code", None) or (
            (error.get("Error") or {}).get("Code") if isinstance(error, dict) else None
        )
        logger.warning(
            "account store unavailable",
            extra={"request_id": rid, "path": scope.get("path"), "error": type(exc).__name__, "code": code},
        )
        message = "The gateway could not reach its account store; please retry."
        await error_response(retry_soon(message, "storage_unavailable"), scope.get("path", ""))(scope, receive, send)


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


class StagePrefix:
    """Locally, also answer under `/api/v1/...` and the unified API's `/api/chat`, `/api/models` and
    `/api/stats`: deployed, the API Gateway stage `api` supplies that prefix, so the base URLs the
    seeds' documents write (`.../api/v1`, `.../api`) work on both."""

    PREFIX = ("/api/v1/", "/api/chat", "/api/models", "/api/stats")

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and path.startswith(self.PREFIX):
            scope = {**scope, "path": path[len("/api") :], "raw_path": scope.get("raw_path", b"")[len(b"/api") :]}
        await self.app(scope, receive, send)
