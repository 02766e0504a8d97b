"""A fake Anthropic Messages API on a real uvicorn server, strict about the documented request shape.

It refuses, as Anthropic does, with `{"type": "error", "error": {type, message}}`, anything the
Messages API documents as invalid: missing max_tokens, unknown top-level fields, roles other
than user/assistant, turns that do not alternate (stricter than Anthropic, which would merge
them, so the adapter's own merging is what gets tested), empty text blocks, tool_use blocks
not answered by tool_result blocks at the start of the next user turn, tool blocks without
`tools`, malformed image sources, temperature outside 0..1, and temperature with top_p. With
thinking enabled, the last assistant turn, if it calls tools, must begin with a thinking block,
and thinking blocks must carry the signature this server gave them (SIGNATURE), as Anthropic requires.

The model name picks the answer (see SCENARIOS), so one server serves every test. Streams
follow the event sequences of Anthropic's streaming documentation, pings included.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.support.servers import LoopbackApp

API_KEY = "sk-ant-test"
TOP_LEVEL = {
    "model",
    "messages",
    "max_tokens",
    "system",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "stream",
    "metadata",
    "tools",
    "tool_choice",
    "thinking",
    "service_tier",
}
BLOCK_KEYS = {
    "text": {"type", "text", "cache_control", "citations"},
    "image": {"type", "source", "cache_control"},
    "document": {"type", "source", "cache_control", "title", "context", "citations"},
    "tool_use": {"type", "id", "name", "input", "cache_control"},
    "tool_result": {"type", "tool_use_id", "content", "is_error", "cache_control"},
    "thinking": {"type", "thinking", "signature"},
    "redacted_thinking": {"type", "data"},
}
IMAGE_TYPES = {"image/jpeg", "image/png", "image/gif", "image/webp"}
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
TOOL_ID = re.compile(r"^[a-zA-Z0-9_-]+$")

# The exact JSON the fake "model" writes for each tool call, spaces and escapes included, so
# that a test can check the streamed fragments reassemble to exactly this text.
WEATHER_JSON = '{"location": "Z\\u00fcrich \\"old town\\", CH", "unit": "celsius"}'
TIME_JSON = '{"timezone": "Europe/Zurich", "format": "24h"}'
TEXT = "Hello! I am a fake Claude, answering in several pieces."
THINKING = "The user greets me; a short answer will do."
SIGNATURE = "sig-fake-EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"


class Invalid(Exception):
    pass


def _check_block(block: Any, role: str, where: str) -> None:
    if not isinstance(block, dict) or block.get("type") not in BLOCK_KEYS:
        raise Invalid(f"{where}: unknown content block {block!r:.80}")
    kind = block["type"]
    extra = set(block) - BLOCK_KEYS[kind]
    if extra:
        raise Invalid(f"{where}.{sorted(extra)[0]}: Extra inputs are not permitted")
    if kind == "text" and (not isinstance(block.get("text"), str) or not block["text"]):
        raise Invalid(f"{where}: text content blocks must be non-empty")
    if kind in ("image", "document"):
        source = block.get("source") or {}
        if source.get("type") == "base64":
            if kind == "image" and source.get("media_type") not in IMAGE_TYPES:
                raise Invalid(f"{where}.source.media_type: must be one of {sorted(IMAGE_TYPES)}")
            if not isinstance(source.get("data"), str) or set(source) != {"type", "media_type", "data"}:
                raise Invalid(f"{where}.source: base64 source needs exactly media_type and data")
        elif source.get("type") == "url":
            if not str(source.get("url", "")).startswith(("http://", "https://")) or set(source) != {
                "type",
                "url",
            }:
                raise Invalid(f"{where}.source: url source needs an http(s) url")
        else:
            raise Invalid(f"{where}.source.type: must be base64 or url")
    if kind in ("thinking", "redacted_thinking") and role != "assistant":
        raise Invalid(f"{where}: thinking blocks are only allowed in assistant messages")
    if kind == "thinking" and block.get("signature") != SIGNATURE:
        raise Invalid(f"{where}.signature: Invalid `signature` in `thinking` block")
    if kind == "tool_use":
        if role != "assistant":
            raise Invalid(f"{where}: tool_use blocks are only allowed in assistant messages")
        if not isinstance(block.get("input"), dict) or not block.get("name"):
            raise Invalid(f"{where}: tool_use needs a name and an input object")
        if not TOOL_ID.match(str(block.get("id"))):
            raise Invalid(f"{where}.id: String should match pattern '^[a-zA-Z0-9_-]+$'")
    if kind == "tool_result":
        if role != "user":
            raise Invalid(f"{where}: tool_result blocks are only allowed in user messages")
        content = block.get("content")
        if isinstance(content, list):
            for i, inner in enumerate(content):
                if not isinstance(inner, dict) or inner.get("type") not in ("text", "image", "document"):
                    raise Invalid(f"{where}.content.{i}: tool_result content must be text, image or document")
                _check_block(inner, role, f"{where}.content.{i}")
        elif content is not None and not isinstance(content, str):
            raise Invalid(f"{where}.content: must be a string or a list of blocks")


def check_request(headers: Any, body: Any) -> tuple[int, str, str] | None:
    """(status, error type, message) when the request breaks the documented rules, else None."""
    if headers.get("x-api-key") != API_KEY:
        return 401, "authentication_error", "invalid x-api-key"
    if headers.get("anthropic-version") != "2023-06-01":
        return 400, "invalid_request_error", "anthropic-version: header is required"
    try:
        _check_body(body)
    except Invalid as exc:
        return 400, "invalid_request_error", str(exc)
    return None


def _check_body(body: Any) -> None:
    if not isinstance(body, dict):
        raise Invalid("body must be an object")
    extra = set(body) - TOP_LEVEL
    if extra:
        raise Invalid(f"{sorted(extra)[0]}: Extra inputs are not permitted")
    if not isinstance(body.get("model"), str):
        raise Invalid("model: Field required")
    if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1:
        raise Invalid("max_tokens: Field required")
    temperature, top_p = body.get("temperature"), body.get("top_p")
    if temperature is not None and not 0 <= temperature <= 1:
        raise Invalid("temperature: Input should be less than or equal to 1")
    if temperature is not None and top_p is not None:
        raise Invalid("`temperature` and `top_p` cannot both be specified for this model. Please use only one.")
    for stop in body.get("stop_sequences") or ():
        if not isinstance(stop, str) or not stop.strip():
            raise Invalid("stop_sequences: each stop sequence must contain non-whitespace")
    if "metadata" in body and set(body["metadata"]) - {"user_id"}:
        raise Invalid("metadata: Extra inputs are not permitted")
    system = body.get("system")
    if isinstance(system, list):
        for i, block in enumerate(system):
            if not isinstance(block, dict) or block.get("type") != "text":
                raise Invalid(f"system.{i}: system blocks must be text")
            _check_block(block, "system", f"system.{i}")
    elif system is not None and not isinstance(system, str):
        raise Invalid("system: must be a string or a list of text blocks")

    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise Invalid("messages: at least one message is required")
    pending: list[str] = []  # tool_use ids the next user turn must answer first
    used_tools = False
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or set(message) != {"role", "content"}:
            raise Invalid(f"messages.{i}: a message has exactly role and content")
        role = message["role"]
        if role not in ("user", "assistant"):
            raise Invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        if i and messages[i - 1]["role"] == role:
            raise Invalid(f"messages.{i}: roles must alternate between user and assistant")
        content = message["content"]
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if not isinstance(blocks, list) or not blocks:
            raise Invalid(f"messages.{i}: all messages must have non-empty content")
        for j, block in enumerate(blocks):
            _check_block(block, role, f"messages.{i}.content.{j}")
        if pending:
            answered = [b.get("tool_use_id") for b in blocks[: len(pending)] if b.get("type") == "tool_result"]
            if sorted(answered) != sorted(pending):
                raise Invalid(
                    f"messages.{i}: Did not find {len(pending)} `tool_result` block(s) at the beginning of "
                    "this message. Messages following `tool_use` blocks must begin with a matching number "
                    "of `tool_result` blocks."
                )
        pending = [b["id"] for b in blocks if b["type"] == "tool_use"]
        thinking = (body.get("thinking") or {}).get("type") == "enabled"
        last = all(m.get("role") != "assistant" for m in messages[i + 1 :])
        if thinking and last and pending and blocks[0]["type"] not in ("thinking", "redacted_thinking"):
            raise Invalid(
                f"messages.{i}.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
                f"`{blocks[0]['type']}`. When `thinking` is enabled, a final `assistant` message must start "
                "with a thinking block."
            )
        used_tools = used_tools or any(b["type"] in ("tool_use", "tool_result") for b in blocks)

    tools = body.get("tools")
    if used_tools and not tools:
        raise Invalid("Requests which include `tool_use` or `tool_result` blocks must define tools.")
    names = set()
    for i, tool in enumerate(tools or ()):
        if not TOOL_NAME.match(str(tool.get("name"))):
            raise Invalid(f"tools.{i}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'")
        schema = tool.get("input_schema")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            raise Invalid(f"tools.{i}.input_schema: must be a JSON schema of type object")
        if set(tool) - {"name", "description", "input_schema", "cache_control"}:
            raise Invalid(f"tools.{i}: Extra inputs are not permitted")
        names.add(tool["name"])
    choice = body.get("tool_choice")
    if choice is not None:
        if not tools or choice.get("type") not in ("auto", "any", "tool", "none"):
            raise Invalid("tool_choice: must be auto, any, tool or none, with tools")
        if choice["type"] == "tool" and choice.get("name") not in names:
            raise Invalid("tool_choice.name: not one of the tools")


def _pieces(text: str, sizes: tuple[int, ...] = (1, 4, 2, 7, 3)) -> list[str]:
    """Fragments of uneven length, the way the API splits text and partial JSON."""
    out, i, k = [], 0, 0
    while i < len(text):
        out.append(text[i : i + sizes[k % len(sizes)]])
        i += sizes[k % len(sizes)]
        k += 1
    return out


def _event(payload: dict[str, Any]) -> bytes:
    return f"event: {payload['type']}\ndata: ".encode() + orjson.dumps(payload) + b"\n\n"


class Scenario:
    """One answer: content blocks, stop reason and usage, whole or as an event stream."""

    def __init__(
        self,
        blocks: list[dict[str, Any]],
        stop_reason: str = "end_turn",
        usage: dict[str, int] | None = None,
        stop_sequence: str | None = None,
    ) -> None:
        self.blocks = blocks
        self.stop_reason = stop_reason
        self.usage = usage or {"input_tokens": 25, "output_tokens": 15}
        self.stop_sequence = stop_sequence

    def message(self, model: str) -> dict[str, Any]:
        content = []
        for block in self.blocks:
            if block["type"] == "tool_use":
                block = {k: v for k, v in block.items() if k != "json"}
                block["input"] = orjson.loads(self.tool_json(block["id"]))
            content.append(block)
        return {
            "id": "msg_01FakeWhole",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": self.stop_reason,
            "stop_sequence": self.stop_sequence,
            "usage": self.usage,
        }

    def tool_json(self, tool_id: str) -> str:
        return next(b["json"] for b in self.blocks if b.get("id") == tool_id)

    def events(self, model: str) -> list[dict[str, Any]]:
        start_usage = {k: v for k, v in self.usage.items() if k != "output_tokens"} | {"output_tokens": 1}
        events: list[dict[str, Any]] = [
            {
                "type": "message_start",
                "message": {
                    "id": "msg_01FakeStream",
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": start_usage,
                },
            }
        ]
        for index, block in enumerate(self.blocks):
            if block["type"] == "thinking":
                start = {"type": "thinking", "thinking": "", "signature": ""}
                events.append({"type": "content_block_start", "index": index, "content_block": start})
                for piece in _pieces(block["thinking"]):
                    delta = {"type": "thinking_delta", "thinking": piece}
                    events.append({"type": "content_block_delta", "index": index, "delta": delta})
                delta = {"type": "signature_delta", "signature": block["signature"]}
                events.append({"type": "content_block_delta", "index": index, "delta": delta})
            elif block["type"] == "redacted_thinking":
                events.append({"type": "content_block_start", "index": index, "content_block": block})
            elif block["type"] == "text":
                events.append(
                    {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}
                )
                if index == 0:
                    events.append({"type": "ping"})
                for piece in _pieces(block["text"]):
                    delta = {"type": "text_delta", "text": piece}
                    events.append({"type": "content_block_delta", "index": index, "delta": delta})
            else:
                start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
                events.append({"type": "content_block_start", "index": index, "content_block": start})
                events.append(
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": ""},
                    }
                )
                for k, piece in enumerate(_pieces(block["json"], (5, 1, 9, 3))):
                    delta = {"type": "input_json_delta", "partial_json": piece}
                    events.append({"type": "content_block_delta", "index": index, "delta": delta})
                    if k == 2:
                        events.append({"type": "ping"})
            events.append({"type": "content_block_stop", "index": index})
        events.append(
            {
                "type": "message_delta",
                "delta": {"stop_reason": self.stop_reason, "stop_sequence": self.stop_sequence},
                "usage": {"output_tokens": self.usage["output_tokens"]},
            }
        )
        events.append({"type": "message_stop"})
        return events


TOOLS = Scenario(
    [
        {"type": "text", "text": "Let me look both up."},
        {"type": "tool_use", "id": "toolu_01Weather", "name": "get_weather", "json": WEATHER_JSON},
        {"type": "tool_use", "id": "toolu_02Time", "name": "get_time", "json": TIME_JSON},
    ],
    stop_reason="tool_use",
    usage={"input_tokens": 472, "output_tokens": 89},
)
SCENARIOS: dict[str, Scenario] = {
    "claude-text": Scenario([{"type": "text", "text": TEXT}]),
    "claude-tools": TOOLS,
    "claude-length": Scenario([{"type": "text", "text": "Cut short"}], stop_reason="max_tokens"),
    "claude-stop-sequence": Scenario(
        [{"type": "text", "text": "Up to the"}], stop_reason="stop_sequence", stop_sequence="END"
    ),
    "claude-refusal": Scenario([{"type": "text", "text": "I can't help with that."}], stop_reason="refusal"),
    "claude-thinking": Scenario(
        [
            {"type": "thinking", "thinking": THINKING, "signature": SIGNATURE},
            {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP"},
            {"type": "text", "text": TEXT},
        ],
        usage={"input_tokens": 40, "output_tokens": 60},
    ),
    "claude-thinking-tools": Scenario(
        [
            {"type": "thinking", "thinking": THINKING, "signature": SIGNATURE},
            {"type": "tool_use", "id": "toolu_01Weather", "name": "get_weather", "json": WEATHER_JSON},
        ],
        stop_reason="tool_use",
        usage={"input_tokens": 400, "output_tokens": 70},
    ),
    "claude-cache": Scenario(
        [{"type": "text", "text": "Cached."}],
        usage={
            "input_tokens": 12,
            "cache_creation_input_tokens": 100,
            "cache_read_input_tokens": 2000,
            "output_tokens": 30,
        },
    ),
}
HTTP_ERRORS = {  # model -> (status, Anthropic error type, message, extra headers)
    "claude-http-400": (400, "invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum", {}),
    "claude-http-429": (
        429,
        "rate_limit_error",
        "Number of request tokens has exceeded your rate limit",
        {"retry-after": "7"},
    ),
    "claude-http-529": (529, "overloaded_error", "Overloaded", {}),
}


def _error(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> Response:
    body = {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_fake"}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


class FakeAnthropic(LoopbackApp):
    """The server; `requests` holds every body it accepted or refused, newest last."""

    name = "fake-anthropic"

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.app = Starlette(routes=[Route("/v1/messages", self.messages, methods=["POST"])])

    async def messages(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        self.requests.append(body)
        refused = check_request(request.headers, body)
        if refused:
            return _error(*refused)
        model = body["model"]
        if model in HTTP_ERRORS:
            status, kind, message, headers = HTTP_ERRORS[model]
            return _error(status, kind, message, headers)
        if model == "claude-hang":
            await asyncio.sleep(1.5)
        if not body.get("stream"):
            return Response(orjson.dumps(SCENARIOS.get(model, SCENARIOS["claude-text"]).message(model)))
        return StreamingResponse(self._stream(model), media_type="text/event-stream")

    async def _stream(self, model: str) -> AsyncIterator[bytes]:
        events = SCENARIOS.get(model, SCENARIOS["claude-text"]).events(model)
        if model == "claude-early-error":
            events = [{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}]
        elif model == "claude-midstream-error":
            events = [*events[:5], {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}]
        elif model in ("claude-cut", "claude-drop", "claude-stall"):
            events = events[:6]
        for i, event in enumerate(events):
            yield _event(event)
            if i % 4 == 0:
                await asyncio.sleep(0)  # let chunks leave separately, as a real stream's do
        if model == "claude-drop":
            raise ConnectionResetError("the fake drops the connection mid-stream")
        if model == "claude-stall":
            await asyncio.sleep(1.5)

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"
