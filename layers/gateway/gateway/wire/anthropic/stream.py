"""Anthropic's event stream, both ways: a provider's events as canonical chunks (`Reader`), and the canonical
stream as events for a caller of /v1/messages (message_start, ping, content_block_start / delta /
stop with text, thinking and tool_use blocks, message_delta, message_stop; `error` after a failure).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from gateway.errors import scrub
from gateway.upstream import UpstreamError, UpstreamHTTPError
from gateway.wire import toolkit
from gateway.wire.anthropic.answer import _matched, _stop, _usage, message_id, usage
from gateway.wire.anthropic.errors import ERROR_STATUS, STREAM_ERROR_TYPES
from gateway.wire.anthropic.request_in import estimate
from gateway.wire.chat import shape


class Reader(toolkit.Chunks):
    """Turns Anthropic stream events into OpenAI chunks, one event at a time."""

    def __init__(self, model: str | None) -> None:
        super().__init__(model, f"msg_{uuid.uuid4().hex}")
        self.counts: dict[str, Any] = {}
        self.stop_reason: str | None = None
        self.stop_sequence: str | None = None
        self.done = False

    def feed(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message") or {}
            self.head["id"] = message.get("id") or self.head["id"]
            self.head["model"] = message.get("model") or self.head["model"]
            self.counts.update(message.get("usage") or {})
            # The prompt's count comes first: a stream cut after it is billed that, not the prompt's bound.
            return [*self.start(), self.usage(usage(self.counts))]
        if kind == "content_block_start":
            return self.start() + self._block(event.get("index", 0), event.get("content_block") or {})
        if kind == "content_block_delta":
            return self.start() + self._delta(event.get("index", 0), event.get("delta") or {})
        if kind == "content_block_stop":
            return self.tool_stop(event.get("index", 0))
        if kind == "message_delta":
            delta = event.get("delta") or {}
            self.stop_reason = delta.get("stop_reason") or self.stop_reason
            self.stop_sequence = delta.get("stop_sequence") or self.stop_sequence
            # Counts in message_delta are cumulative; later values replace earlier ones.
            self.counts.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})
            return []
        if kind == "message_stop":
            self.done = True
            finish = toolkit.finish_reason(self.stop_reason)
            return [
                *self.start(),
                self.chunk({}, finish, **_matched(self.stop_reason, self.stop_sequence)),
                self.usage(usage(self.counts)),
            ]
        return []  # ping, and event types added later

    def _block(self, index: int, block: dict[str, Any]) -> list[dict[str, Any]]:
        kind = block.get("type")
        if kind == "tool_use":
            out = [self.tool_call(index, block.get("id"), block.get("name"))]
            if block.get("input"):  # not sent by today's API, but a complete input must not be lost
                out += self.arguments(index, toolkit.tool_arguments(block["input"]))
            return out
        if kind == "text" and block.get("text"):
            return [self.chunk({"content": block["text"]})]
        if kind == "thinking" and block.get("thinking"):
            return [self.chunk({"reasoning_content": block["thinking"]})]
        if kind == "redacted_thinking":
            return [self.chunk({"thinking_blocks": [block]})]
        return []

    def _delta(self, index: int, delta: dict[str, Any]) -> list[dict[str, Any]]:
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            return [self.chunk({"content": delta["text"]})]
        if kind == "input_json_delta":
            return self.arguments(index, delta.get("partial_json") or "")
        if kind == "thinking_delta" and delta.get("thinking"):
            return [self.chunk({"reasoning_content": delta["thinking"]})]
        if kind == "signature_delta" and delta.get("signature"):  # ends its thinking block
            signed = {"type": "thinking", "thinking": "", "signature": delta["signature"]}
            return [self.chunk({"thinking_blocks": [signed]})]
        return []


async def read_events(response: httpx.Response, provider: str) -> AsyncIterator[dict[str, Any]]:
    """Server-sent events' data, parsed; lines of one event are joined as the SSE spec says."""
    data: list[str] = []
    async for line in response.aiter_lines():
        if line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif not line and data:
            yield _parse("\n".join(data), provider)
            data = []
        # `event:` names repeat the data's `type`; comments and ids carry nothing we need
    if data:
        yield _parse("\n".join(data), provider)


def _parse(data: str, provider: str) -> dict[str, Any]:
    try:
        event = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError(f"{provider} sent an event that is not JSON") from exc
    if not isinstance(event, dict):
        raise UpstreamError(f"{provider} sent an event that is not an object")
    return event


def error_of(event: dict[str, Any], provider: str) -> UpstreamHTTPError:
    error = event.get("error") if isinstance(event.get("error"), dict) else {}
    kind = str(error.get("type") or "api_error")
    message = scrub(str(error.get("message") or kind))
    return UpstreamHTTPError(
        f"{provider} failed mid-stream: {scrub(kind)}: {message}", status=ERROR_STATUS.get(kind, 500)
    )


def event(payload: dict[str, Any]) -> bytes:
    return b"event: " + payload["type"].encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


class Renderer:
    """Canonical items in, Anthropic's stream events out (through wire/stream.py's driver): one content block
    open at a time; `event: error` after a failure."""

    def __init__(self, canonical: dict[str, Any]) -> None:
        self.canonical = canonical
        self.stops = canonical.get("stop") or []
        self.index = -1  # the last block opened
        self.open: str | None = None  # its type, while it is open
        self.tools: dict[int, int] = {}  # canonical tool call index -> block index
        self.choice: dict[str, Any] = {}  # finish_reason and stop_reason, as the chunks said them

    def start(self, head: dict[str, Any] | None) -> list[bytes]:
        # An estimate (tokens.py), as nothing is counted yet: message_delta carries the upstream's count.
        usage = {
            "input_tokens": estimate(self.canonical),
            "output_tokens": 0,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }
        message = {
            "id": message_id(head["id"]) if head else f"msg_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": head["model"] if head else self.canonical.get("model"),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }
        return [event({"type": "message_start", "message": message}), event({"type": "ping"})]

    def _close(self) -> list[bytes]:
        if self.open is None:
            return []
        self.open = None
        return [event({"type": "content_block_stop", "index": self.index})]

    def _begin(self, block: dict[str, Any]) -> list[bytes]:
        out = self._close()
        self.index += 1
        self.open = block["type"]
        return [*out, event({"type": "content_block_start", "index": self.index, "content_block": block})]

    def _delta(self, kind: str, block: dict[str, Any], delta: dict[str, Any]) -> list[bytes]:
        out = [] if self.open == kind else self._begin(block)
        return [*out, event({"type": "content_block_delta", "index": self.index, "delta": delta})]

    def _thinking(self, delta: dict[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        reasoning = shape.reasoning(delta) or ""
        empty = {"type": "thinking", "thinking": "", "signature": ""}
        if reasoning:
            out += self._delta("thinking", empty, {"type": "thinking_delta", "thinking": reasoning})
        for block in delta.get("thinking_blocks") or ():
            if not isinstance(block, dict):
                continue
            if block.get("type") == "redacted_thinking":
                out += [*self._begin({"type": "redacted_thinking", "data": block.get("data") or ""}), *self._close()]
            elif isinstance(block.get("signature"), str) and block["signature"]:  # it ends its thinking block
                out += self._delta("thinking", empty, {"type": "signature_delta", "signature": block["signature"]})
                out += self._close()
        return out

    def _tool_calls(self, calls: list[Any]) -> list[bytes]:
        out: list[bytes] = []
        for call in calls:
            if not isinstance(call, dict):
                continue
            function = call.get("function") or {}
            position = call.get("index", 0)
            if position not in self.tools:
                block = {
                    "type": "tool_use",
                    "id": call.get("id") or f"toolu_{uuid.uuid4().hex[:24]}",
                    "name": function.get("name") or "",
                    "input": {},
                }
                out += self._begin(block)
                self.tools[position] = self.index
            fragment = function.get("arguments")
            if isinstance(fragment, str) and fragment:
                delta = {"type": "input_json_delta", "partial_json": fragment}
                # Another call's fragment after its block closed keeps that block's index, as the SDKs assemble.
                out.append(event({"type": "content_block_delta", "index": self.tools[position], "delta": delta}))
        return out

    def delta(self, chunk: dict[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        for choice in chunk["choices"]:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            out += self._thinking(delta)
            text = delta.get("content")
            if isinstance(text, str) and text:
                out += self._delta("text", {"type": "text", "text": ""}, {"type": "text_delta", "text": text})
            if delta.get("tool_calls"):
                out += self._tool_calls(delta["tool_calls"])
            for name in ("finish_reason", "stop_reason"):
                if choice.get(name) is not None:
                    self.choice[name] = choice[name]
        return out

    def finish(self, chunk: dict[str, Any]) -> list[bytes]:
        reason, sequence = _stop(self.choice, self.stops, bool(self.tools))
        delta = {"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": sequence}}
        return [*self._close(), event({**delta, "usage": _usage(chunk["usage"])}), event({"type": "message_stop"})]

    def fail(self, error: dict[str, Any]) -> list[bytes]:
        kind = STREAM_ERROR_TYPES.get(error.get("type"), "api_error")
        return [event({"type": "error", "error": {"type": kind, "message": str(error.get("message") or kind)}})]
