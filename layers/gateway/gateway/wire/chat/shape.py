"""Making any upstream's answer OpenAI-shaped, with our id, our model name and the provider named."""

from __future__ import annotations

import time
from typing import Any

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


def _size(value: Any) -> int:
    return len(value.encode()) if isinstance(value, str) else 0


def completion_tokens(message: dict[str, Any]) -> int:
    """The most output tokens a message or a delta can have been billed: its text, reasoning and tool calls.

    Used where the provider reports no count (a stream cut before its usage chunk), so it is a
    bound, not an estimate: no tokenizer we route to makes more tokens of a text than it has
    UTF-8 bytes, so text made of rare, token-dense characters cannot be billed beyond it.
    Whatever a provider sends, however malformed, counts and never raises.
    """
    content = message.get("content")
    total = _size(content) + _size(message.get("refusal"))
    if isinstance(content, list):
        total += sum(_size(part.get("text")) for part in content if isinstance(part, dict))
    total += sum(_size(message.get(name)) for name in REASONING_FIELDS)
    blocks = message.get("thinking_blocks")  # redacted thinking is billed as the output it was
    for block in blocks if isinstance(blocks, list) else ():
        if isinstance(block, dict):
            total += _size(block.get("thinking")) + _size(block.get("data"))
    calls = message.get("tool_calls")
    for call in [*(calls if isinstance(calls, list) else ()), {"function": message.get("function_call")}]:
        if not isinstance(call, dict):
            continue
        for kind, text in (("function", "arguments"), ("custom", "input")):
            inner = call.get(kind)
            if isinstance(inner, dict):
                total += _size(inner.get("name")) + _size(inner.get(text))
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
