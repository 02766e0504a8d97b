"""Reading a JSON request body within the size limit, and describing it in the OpenAPI document."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request

from gateway.config import settings
from gateway.errors import GatewayError, invalid_request
from gateway.fields import MAX_DEPTH, too_deep


def _too_large(limit: int) -> GatewayError:
    return GatewayError(
        413,
        f"The request body is larger than the {limit // (1024 * 1024)} MB limit.",
        code="request_too_large",
    )


async def read_json(request: Request) -> Any:
    limit = settings().max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    size = 0
    parts = []
    try:
        async for part in request.stream():
            size += len(part)
            if size > limit:
                raise _too_large(limit)
            parts.append(part)
    except ClientDisconnect:
        # A caller that hangs up mid-upload is no fault of ours: an info line, not an error with a trace.
        raise GatewayError(
            400, "The client closed the connection before sending the whole body.", code="client_disconnected"
        ) from None
    raw = b"".join(parts)
    if not raw.strip():
        raise invalid_request("The request body is empty; send a JSON object.", code="invalid_json")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise invalid_request(
            f"We could not parse the JSON body of your request ({exc}). Send valid JSON with "
            "'Content-Type: application/json'.",
            code="invalid_json",
        ) from exc
    # Fewer brackets than the limit cannot nest deeper than it: most bodies skip the walk.
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and too_deep(body):
        raise invalid_request(
            f"The JSON body nests arrays and objects more than {MAX_DEPTH} levels deep.", code="nesting_too_deep"
        )
    return body


def JSON_BODY(description: str | None, *required: str) -> dict[str, Any]:
    """The OpenAPI request body of a route that reads its JSON itself (`read_json`), not through pydantic.

    Validation is the gateway's own (wire/), so the document describes the
    object and its required fields, and FastAPI spends nothing per request on it.
    """
    schema: dict[str, Any] = {"type": "object", "additionalProperties": True}
    if required:
        schema["required"] = list(required)
    body: dict[str, Any] = {"required": True, "content": {"application/json": {"schema": schema}}}
    if description:
        body["description"] = description
    return {"requestBody": body}
