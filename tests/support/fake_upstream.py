"""The tests' fake upstream provider, one real uvicorn server on 127.0.0.1 that speaks both OpenAI's
chat completions (under PREFIXES: two "providers" on one server) and Anthropic's Messages API (at
/v1/messages). The model name it receives picks what it does.

OpenAI's chat completions (the gateway's catalog maps its own model ids onto these names):

    ok          an echo-like answer with usage (streamed as real SSE with small gaps)
    slow        like `ok`, after waiting SLOW_SECONDS before sending headers
    drip        like `ok`, but streamed with DRIP_GAP seconds between chunks
    long        a stream of LONG_CHUNKS chunks, long enough for a client to hang up mid-way
    error-500   HTTP 500 with an OpenAI error body
    error-429   HTTP 429 with Retry-After
    error-400   HTTP 400 with an OpenAI error body (a request the upstream refuses)
    error-leak  HTTP 400 whose error message quotes credentials (LEAKED_SECRETS), as careless servers do
    hang        never answers (until the caller hangs up)
    cut         streams a few chunks, then drops the connection without [DONE]
    stall       streams a few chunks, then goes silent (until the caller hangs up)
    error-mid   streams a few chunks, then sends `data: {"error": {...}}`
    no-usage    streams without a usage chunk, even when asked for one
    no-done     streams a finish_reason and usage but ends without `data: [DONE]`
    odd-finish  answers with a non-OpenAI finish_reason ("end_turn")
    tools       answers with a tool call; streamed as tool_call argument deltas
    not-json    HTTP 200 whose body is not JSON
    garbage     HTTP 200 JSON whose choices are not objects
    bad-usage   an `ok` answer whose usage is a string, not an object
    cached      an `ok` answer that read CACHED_TOKENS of its prompt from the provider's cache
    reasoning   an `ok` answer after REASONING as `reasoning_content` (streamed as its own deltas first), with
                its tokens in `completion_tokens_details.reasoning_tokens`
    gated       an `ok` answer once the upstream's `gate` is open (it is, until a test clears it; at most
                GATE_LIMIT seconds): a test counts the requests waiting at the gate, so what is in flight at
                once is exact rather than a matter of timing

Every chat request is recorded (path, headers, raw and parsed body) together with how it ended:
`done` (answered in full), `disconnected` (the caller closed the connection first), `cut`
(we dropped it on purpose) or `open` (still running).

Anthropic's Messages API is strict about the documented request shape. It refuses, as Anthropic does,
with `{"type": "error", "error": {type, message}}`, anything the Messages API documents as invalid:
missing max_tokens, unknown top-level fields, roles other than user/assistant, turns that do not
alternate (stricter than Anthropic, which would merge them, so the adapter's own merging is what gets
tested), empty text blocks, tool_use blocks not answered by tool_result blocks at the start of the next
user turn, tool blocks without `tools`, malformed image sources, temperature outside 0..1, and
temperature with top_p. With thinking enabled, the last assistant turn, if it calls tools, must begin
with a thinking block, and thinking blocks must carry the signature this server gave them (SIGNATURE),
as Anthropic requires. The model name picks the answer (see SCENARIOS and HTTP_ERRORS). Streams follow
the event sequences of Anthropic's streaming documentation, pings included. Every Messages body it
accepted or refused is in `requests`, newest last.

tests/support/greedy_upstream.py stays a server of its own: it bills as the most pessimistic honest
provider would (every byte a prompt token, the output exactly the limit), the opposite of this
fake's fixed usage, for the money tests. bench/fake_upstream.py stays the benchmark's: a raw ASGI
app in a process of its own, whose CPU is half of the "direct call" the benchmark divides by.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support.servers import LoopbackApp

SLOW_SECONDS = 0.3
CHUNK_GAP = 0.01
DRIP_GAP = 0.1
LONG_CHUNKS = 400  # at CHUNK_GAP apart: several seconds, far longer than any test waits
HANG_LIMIT = 60.0  # even a hung request gives up eventually, so the server can always stop
GATE_LIMIT = 20.0  # seconds a `gated` request may wait at a closed gate
CACHED_TOKENS = 8  # of PROMPT_TOKENS, for `cached`
PROMPT_TOKENS = 11  # what the fake reports as prompt usage, so tests can tell it from estimates
TOOL_ARGUMENTS = ('{"city"', ': "Pa', 'ris"}')
REASONING = ("The user", " wants", " an echo.")  # what `reasoning` thinks, piece by piece
# What `error-leak` quotes in its error message: none of it may reach a client.
LEAKED_SECRETS = ("sk-live-1234567890abcdefghij", "tok_abcdefghijklmnopqrstuvwxyz012345", "AKIAABCDEFGHIJKLMNOP")
PREFIXES = ("/v1", "/second/v1")  # two "providers" on one server
UPSTREAM_TIMEOUT = 1.0  # the gateway's UPSTREAM_TIMEOUT_SECONDS in the tests (conftest sets it): 504s are quick


class CutConnection(Exception):
    """Raised inside a streaming body: uvicorn then drops the connection mid-response."""


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    raw: str
    body: Any
    state: str = "open"  # open | done | disconnected | cut
    received_at: float = field(default_factory=time.monotonic)
    ended: threading.Event = field(default_factory=threading.Event)

    @property
    def model(self) -> str | None:
        return self.body.get("model") if isinstance(self.body, dict) else None

    @property
    def prefix(self) -> str:
        return self.path.rsplit("/chat/completions", 1)[0]

    def end(self, state: str) -> None:
        if self.state == "open":
            self.state = state
        self.ended.set()

    def wait_ended(self, timeout: float) -> str:
        """The final state, waiting at most `timeout` seconds; `open` if it is still running."""
        self.ended.wait(timeout)
        return self.state


def _last_user_text(messages: Any) -> str:
    for message in reversed(messages if isinstance(messages, list) else []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                texts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
                images = sum(1 for p in content if isinstance(p, dict) and p.get("type") == "image_url")
                return " ".join(texts) + (f" (+{images} image)" if images else "")
    return ""


def answer_text(body: dict[str, Any]) -> str:
    """What `ok` says to a request."""
    return f"Echo: {_last_user_text(body.get('messages'))}"


def answer_pieces(body: dict[str, Any]) -> list[str]:
    words = answer_text(body).split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


def _usage(completion_tokens: int, behaviour: str = "ok") -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": completion_tokens,
        "total_tokens": PROMPT_TOKENS + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": CACHED_TOKENS if behaviour == "cached" else 0},
    }
    if behaviour == "reasoning":  # of the completion tokens
        usage["completion_tokens_details"] = {"reasoning_tokens": len(REASONING)}
    return usage


def _tool_name(body: dict[str, Any]) -> str:
    for tool in body.get("tools") or ():
        if isinstance(tool, dict) and isinstance(tool.get("function"), dict):
            return str(tool["function"].get("name", "get_weather"))
    return "get_weather"


def _error(status: int, message: str, type_: str, **extra: Any) -> JSONResponse:
    headers = extra.pop("headers", None)
    body = {"error": {"message": message, "type": type_, "param": None, "code": None, **extra}}
    return JSONResponse(body, status_code=status, headers=headers)


# --- Anthropic's Messages API ------------------------------------------------------------------

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


def _anthropic_error(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> Response:
    body = {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_fake"}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


class FakeUpstream(LoopbackApp):
    """The fake provider's app and its record of requests; `start()` serves it on a free port."""

    def __init__(self) -> None:
        self.records: list[Recorded] = []
        self.requests: list[dict[str, Any]] = []  # every Messages body, accepted or refused, newest last
        self._lock = threading.Lock()
        self.gate = threading.Event()  # where `gated` requests wait: open until a test clears it
        self.gate.set()
        routes = [Route(f"{p}/chat/completions", self._chat, methods=["POST"]) for p in PREFIXES]
        routes += [Route(f"{p}/models", self._models, methods=["GET"]) for p in PREFIXES]
        routes.append(Route("/v1/messages", self._messages, methods=["POST"]))
        self.app = Starlette(routes=routes)
        self.name = "fake-upstream"

    def stop(self) -> None:
        self.gate.set()  # nothing waits at the gate for the server to stop
        super().stop()

    # --- what the tests read -------------------------------------------------------------------

    def find(self, marker: str) -> list[Recorded]:
        """Every request whose body contains `marker` (tests put a unique marker in their prompt)."""
        with self._lock:
            return [r for r in self.records if marker in r.raw]

    def count(self, marker: str) -> int:
        """How many requests have arrived with `marker`, answered or not (`gated` ones wait at the gate)."""
        return len(self.find(marker))

    def wait_for(self, marker: str, count: int = 1, timeout: float = 5.0) -> list[Recorded]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.find(marker)
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.01)

    def one(self, marker: str) -> Recorded:
        found = self.wait_for(marker)
        assert len(found) == 1, f"expected one upstream request with {marker!r}, got {len(found)}"
        return found[0]

    # --- the app -------------------------------------------------------------------------------

    async def _models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": []})

    async def _chat(self, request: Request) -> Response:
        raw = (await request.body()).decode()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        record = Recorded(path=request.url.path, headers=dict(request.headers), raw=raw, body=body)
        with self._lock:
            self.records.append(record)
        if not isinstance(body, dict):
            record.end("done")
            return _error(400, "fake upstream: the body is not a JSON object", "invalid_request_error")
        behaviour = str(body.get("model"))
        stream = body.get("stream") is True
        try:
            response = await self._respond(request, record, behaviour, body, stream)
        except BaseException:
            record.end("disconnected")
            raise
        if not isinstance(response, StreamingResponse):
            record.end("done")
        return response

    async def _respond(
        self, request: Request, record: Recorded, behaviour: str, body: dict[str, Any], stream: bool
    ) -> Response:
        if behaviour == "error-500":
            return _error(500, "fake upstream exploded", "server_error")
        if behaviour == "error-429":
            return _error(
                429,
                "fake upstream: rate limit reached",
                "rate_limit_error",
                headers={"Retry-After": "7"},
            )
        if behaviour == "error-400":
            return _error(
                400,
                "fake upstream says: 'tools[0].function.name' is invalid",
                "invalid_request_error",
            )
        if behaviour == "error-leak":
            secret, token, aws = LEAKED_SECRETS
            return _error(
                400,
                f"Incorrect API key provided: {secret}. We also got 'Authorization: Bearer {token}' and "
                f"aws_access_key_id {aws}; 'messages[0].content' is invalid",
                "invalid_request_error",
            )
        if behaviour == "hang":
            deadline = time.monotonic() + HANG_LIMIT
            # Polled: Starlette has no event for a caller that hangs up before the response starts.
            while not await request.is_disconnected() and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            record.end("disconnected")
            return Response(status_code=499)
        if behaviour == "slow":
            await asyncio.sleep(SLOW_SECONDS)
        if behaviour == "gated":
            deadline = time.monotonic() + GATE_LIMIT
            while not self.gate.is_set() and time.monotonic() < deadline:  # noqa: ASYNC110 - a thread's Event
                await asyncio.sleep(0.01)
        if behaviour == "not-json":
            return Response("<html>502 Bad Gateway</html>", media_type="text/html")
        if behaviour == "garbage":
            return JSONResponse({"id": "x", "object": "chat.completion", "choices": ["not an object"]})
        if behaviour == "bad-usage" and not stream:
            return JSONResponse({**self._whole("ok", body), "usage": "lots of tokens"})
        if stream:
            return StreamingResponse(
                self._sse(record, behaviour, body),
                media_type="text/event-stream",
                headers={"cache-control": "no-cache"},
            )
        return JSONResponse(self._whole(behaviour, body))

    def _whole(self, behaviour: str, body: dict[str, Any]) -> dict[str, Any]:
        finish = "end_turn" if behaviour == "odd-finish" else "stop"
        message: dict[str, Any] = {"role": "assistant", "content": answer_text(body), "refusal": None}
        if behaviour == "reasoning":
            message["reasoning_content"] = "".join(REASONING)
        completion = len(answer_pieces(body)) + (len(REASONING) if behaviour == "reasoning" else 0)
        if behaviour == "tools":
            finish = "tool_calls"
            message = {
                "role": "assistant",
                "content": None,
                "refusal": None,
                "tool_calls": [
                    {
                        "id": "call_fake_1",
                        "type": "function",
                        "function": {"name": _tool_name(body), "arguments": "".join(TOOL_ARGUMENTS)},
                    }
                ],
            }
            completion = len(TOOL_ARGUMENTS)
        return {
            "id": f"fake-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": behaviour,
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
            "usage": _usage(completion, behaviour),
        }

    async def _sse(self, record: Recorded, behaviour: str, body: dict[str, Any]) -> AsyncIterator[bytes]:
        head = {
            "id": f"fake-{uuid.uuid4().hex}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": behaviour,
            "system_fingerprint": "fp_fake",
        }

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            payload = {**head, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
            return b"data: " + json.dumps(payload).encode() + b"\n\n"

        gap = DRIP_GAP if behaviour == "drip" else CHUNK_GAP
        try:
            if behaviour == "tools":
                first_call = {"index": 0, "id": "call_fake_1", "type": "function"}
                first_call["function"] = {"name": _tool_name(body), "arguments": ""}
                deltas: list[dict[str, Any]] = [{"role": "assistant", "content": None, "tool_calls": [first_call]}]
                deltas += [{"tool_calls": [{"index": 0, "function": {"arguments": a}}]} for a in TOOL_ARGUMENTS]
                finish = "tool_calls"
            else:
                pieces = answer_pieces(body)
                if behaviour == "long":
                    pieces = [f" w{i}" for i in range(LONG_CHUNKS)]
                deltas = [{"role": "assistant", "content": ""}] + [{"content": p} for p in pieces]
                if behaviour == "reasoning":
                    deltas[1:1] = [{"reasoning_content": r} for r in REASONING]
                finish = "end_turn" if behaviour == "odd-finish" else "stop"
            completion = len(deltas) - 1
            for i, delta in enumerate(deltas):
                if i:
                    await asyncio.sleep(gap)
                yield chunk(delta)
                if i == 2 and behaviour in ("cut", "stall", "error-mid"):
                    await asyncio.sleep(gap)
                    if behaviour == "cut":
                        record.end("cut")
                        raise CutConnection("the fake upstream drops the connection mid-stream")
                    if behaviour == "stall":
                        await asyncio.sleep(HANG_LIMIT)
                        return
                    error = {"message": "fake upstream: overloaded mid-stream", "type": "server_error"}
                    yield b"data: " + json.dumps({"error": error}).encode() + b"\n\n"
                    record.end("done")
                    return
            await asyncio.sleep(gap)
            yield chunk({}, finish)
            options = body.get("stream_options") or {}
            if options.get("include_usage") and behaviour != "no-usage":
                await asyncio.sleep(gap)
                usage = {**head, "choices": [], "usage": _usage(completion, behaviour)}
                yield b"data: " + json.dumps(usage).encode() + b"\n\n"
            if behaviour != "no-done":
                yield b"data: [DONE]\n\n"
            record.end("done")
        except CutConnection:
            raise
        except BaseException:  # cancelled or closed: the caller hung up
            record.end("disconnected")
            raise

    # --- Anthropic's Messages API ------------------------------------------------------------------

    async def _messages(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        self.requests.append(body)
        refused = check_request(request.headers, body)
        if refused:
            return _anthropic_error(*refused)
        model = body["model"]
        if model in HTTP_ERRORS:
            status, kind, message, headers = HTTP_ERRORS[model]
            return _anthropic_error(status, kind, message, headers)
        if model == "claude-hang":
            await asyncio.sleep(1.5)
        if not body.get("stream"):
            return Response(orjson.dumps(SCENARIOS.get(model, SCENARIOS["claude-text"]).message(model)))
        return StreamingResponse(self._anthropic_stream(model), media_type="text/event-stream")

    async def _anthropic_stream(self, model: str) -> AsyncIterator[bytes]:
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
