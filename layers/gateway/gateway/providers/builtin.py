"""The built-in model: deterministic, offline, and streamed token by token with exact counts.

It lets a fresh local server answer its first request with no network and no keys, and
gives tests a provider whose every token is known. It echoes the last user message, honouring
max_tokens, stop, n, tool_choice and response_format: a forced tool call's arguments and a
`json_schema` answer are documents valid against the caller's schema (`sample`), so structured
output clients (openai `parse`, LangChain `with_structured_output`, AI SDK tools) work offline.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from gateway import tokens
from gateway.providers.sampler import dumps, sample


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            parts = [p.get("text", "") for p in content or () if isinstance(p, dict) and p.get("type") == "text"]
            images = sum(1 for p in content or () if isinstance(p, dict) and p.get("type") == "image_url")
            text = " ".join(t for t in parts if t)
            return f"{text} [{images} image{'s' if images != 1 else ''}]" if images else text
    return ""


def _forced_tool(body: dict[str, Any]) -> dict[str, Any] | None:
    """The tool the request obliges the model to call, if any."""
    tools = [t for t in body.get("tools") or () if isinstance(t, dict) and t.get("type") == "function"]
    choice = body.get("tool_choice")
    if not tools or choice in (None, "none", "auto"):
        return None
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        return next((t for t in tools if t["function"].get("name") == name), None)
    return tools[0]  # "required"


def _structured(body: dict[str, Any], text: str) -> str | None:
    """The JSON document response_format asks for, or None for plain text."""
    fmt = body.get("response_format")
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "json_object":
        return dumps({"text": text})
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        return dumps(sample(schema or {"type": "object"}, text))
    return None


class Generation:
    """What the model will say for one request: pieces of text (plain or JSON), or one tool call."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.prompt_tokens = tokens.count_messages(body.get("messages", ()))
        self.tool = _forced_tool(body)
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        text = _last_user_text(body.get("messages", ()))
        reply = _structured(body, text)
        if reply is None:
            reply = f"You said: {text}" if text else "Hello from the gateway's built-in model."
        stops = body.get("stop")
        for stop in [stops] if isinstance(stops, str) else stops or ():
            if isinstance(stop, str) and stop and stop in reply:
                reply = reply[: reply.index(stop)]
        self.pieces = list(tokens.pieces(reply))
        self.finish_reason = "stop"
        if self.tool is not None:
            parameters = self.tool["function"].get("parameters", {"type": "object"})
            self.arguments = dumps(sample(parameters, text))
            self.pieces = list(tokens.pieces(self.arguments))
            self.finish_reason = "tool_calls"
        if limit is not None and len(self.pieces) > limit:
            self.pieces = self.pieces[:limit]
            self.finish_reason = "length"
        self.n = body.get("n") or 1

    @property
    def completion_tokens(self) -> int:
        return len(self.pieces) * self.n

    def usage(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }

    def tool_call(self, arguments: str) -> dict[str, Any]:
        assert self.tool is not None
        return {
            "id": "call_builtin",
            "type": "function",
            "function": {"name": self.tool["function"]["name"], "arguments": arguments},
        }


class Builtin:
    """Streams one piece every BUILTIN_TOKEN_DELAY seconds (0.01 by default), like a real model."""

    def __init__(self, model: str = "echo") -> None:
        self.model = model
        self.delay = float(os.environ.get("BUILTIN_TOKEN_DELAY", "0.01"))

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        gen = Generation(body)
        text = "".join(gen.pieces)
        message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
        if gen.tool is not None:
            message = {
                "role": "assistant",
                "content": None,
                "refusal": None,
                "tool_calls": [gen.tool_call(text)],
            }
        choices = [
            {"index": i, "message": message, "logprobs": None, "finish_reason": gen.finish_reason} for i in range(gen.n)
        ]
        return {
            "id": f"echo-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": choices,
            "usage": gen.usage(),
        }

    async def stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        gen = Generation(body)
        base = {
            "id": f"echo-{uuid.uuid4().hex}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": self.model,
        }
        for i in range(gen.n):
            first: dict[str, Any] = {"role": "assistant", "content": ""}
            if gen.tool is not None:
                first = {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"index": 0, **gen.tool_call("")}],
                }
            yield {**base, "choices": [{"index": i, "delta": first, "finish_reason": None}]}
        for piece in gen.pieces:
            if self.delay:
                await asyncio.sleep(self.delay)
            for i in range(gen.n):
                delta: dict[str, Any] = {"content": piece}
                if gen.tool is not None:
                    delta = {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}
                yield {**base, "choices": [{"index": i, "delta": delta, "finish_reason": None}]}
        for i in range(gen.n):
            yield {**base, "choices": [{"index": i, "delta": {}, "finish_reason": gen.finish_reason}]}
        yield {**base, "choices": [], "usage": gen.usage()}
