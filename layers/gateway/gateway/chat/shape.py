"""Making any upstream's answer OpenAI-shaped, with our id, our model name and the provider named."""

from __future__ import annotations

import time
from typing import Any

from gateway import tokens

FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter", "function_call"})


def finish_reason(value: Any) -> str | None:
    """Upstreams invent their own ("eos", "end_turn", "error"); clients only know OpenAI's five."""
    if value is None or value in FINISH_REASONS:
        return value
    return {"max_tokens": "length", "tool_use": "tool_calls"}.get(value, "stop")


def usage(prompt_tokens: int, completion_tokens: int, reported: Any = None) -> dict[str, Any]:
    """The upstream's usage when it sent a well-formed one (keeping its details), else our own count."""
    if isinstance(reported, dict) and isinstance(reported.get("prompt_tokens"), int):
        result = dict(reported)
        if not isinstance(result.get("completion_tokens"), int):
            result["completion_tokens"] = completion_tokens
        result["total_tokens"] = result["prompt_tokens"] + result["completion_tokens"]
        return result
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


REASONING_FIELDS = ("reasoning_content", "reasoning")  # DeepSeek's and vLLM's / OpenRouter's


def reasoning(message: dict[str, Any]) -> str | None:
    """The reasoning text a provider sent beside the answer (a message or a delta), if any."""
    for name in REASONING_FIELDS:
        value = message.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def completion_tokens(message: dict[str, Any]) -> int:
    """Output tokens of a message or a delta: text, reasoning and tool calls, all of which are billed.

    Counted where the provider reports no usage (a stream cut before its usage chunk), so
    whatever a provider sends, however malformed, counts and never raises.
    """
    total = tokens.count_content(message.get("content"))
    for name in REASONING_FIELDS:
        if isinstance(message.get(name), str):
            total += tokens.count(message[name])
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            total += tokens.count(str(function.get("name", ""))) + tokens.count(str(function.get("arguments", "")))
    return total


def whole(data: dict[str, Any], *, id: str, model: str, provider: str, prompt_estimate: int) -> dict[str, Any]:
    choices = []
    counted = 0
    for i, choice in enumerate(data.get("choices") or ()):
        choice = dict(choice)
        choice.setdefault("index", i)
        choice.setdefault("logprobs", None)
        choice["finish_reason"] = finish_reason(choice.get("finish_reason")) or "stop"
        message = dict(choice.get("message") or {})
        message["role"] = "assistant"
        message.setdefault("content", None)
        choice["message"] = message
        counted += completion_tokens(message)
        choices.append(choice)
    result = {k: v for k, v in data.items() if k not in ("id", "object", "created", "model", "choices", "usage")}
    return {
        **result,
        "id": id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "provider": provider,
        "choices": choices,
        "usage": usage(prompt_estimate, counted, data.get("usage")),
    }
