"""Anthropic's whole answer, both ways: a Messages API `message` as the canonical chat.completion (from a
provider), and the canonical answer as a `message` (to a caller of /v1/messages).

`usage.input_tokens` excludes cache reads and writes, as Anthropic counts it; `usage.cost` (USD)
is the gateway's, as on chat completions.
"""

from __future__ import annotations

import uuid
from typing import Any

from gateway.upstream import chat_completion
from gateway.wire import toolkit
from gateway.wire.chat import shape


def usage(raw: Any) -> dict[str, Any]:
    """OpenAI usage: every input token (fresh, written to and read from the cache) is a prompt token.

    `cache_creation` splits the writes by lifetime; the one-hour ones are billed at their own price.
    """
    raw = raw if isinstance(raw, dict) else {}
    lifetimes = raw.get("cache_creation")
    hour = lifetimes.get("ephemeral_1h_input_tokens", 0) if isinstance(lifetimes, dict) else None
    return toolkit.openai_usage(
        raw.get("input_tokens"),
        raw.get("output_tokens"),
        raw.get("cache_read_input_tokens"),
        raw.get("cache_creation_input_tokens"),
        written_1h=hour,
    )


def _matched(stop_reason: Any, stop_sequence: Any) -> dict[str, Any]:
    """The stop sequence that ended the answer, as vLLM reports it (the choice's `stop_reason`), so that it
    survives the canonical shape (the Messages renderer gives it back as Anthropic's `stop_sequence`)."""
    return {"stop_reason": stop_sequence} if stop_reason == "stop_sequence" and isinstance(stop_sequence, str) else {}


def from_anthropic(data: dict[str, Any], model: str | None = None) -> dict[str, Any]:
    """The chat.completion for a Messages API response.

    Thinking is `reasoning_content` (its text) and `thinking_blocks` (the blocks themselves, signed
    or redacted, which a later request must send back as they were), as LiteLLM writes them.
    """
    text: list[str] = []
    reasoning: list[str] = []
    thinking: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    for block in data.get("content") or ():
        kind = block.get("type")
        if kind == "text":
            text.append(block.get("text") or "")
        elif kind in ("thinking", "redacted_thinking"):
            reasoning.append(block.get("thinking") or "")
            thinking.append(block)
        elif kind == "tool_use":
            arguments = toolkit.tool_arguments(block.get("input") or {})
            calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": arguments},
                }
            )
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) or None, "refusal": None}
    if calls:
        message["tool_calls"] = calls
    if any(reasoning):
        message["reasoning_content"] = "".join(reasoning)
    if thinking:
        message["thinking_blocks"] = thinking
    result = chat_completion(
        data.get("id") or f"msg_{uuid.uuid4().hex}",
        data.get("model") or model,
        message,
        toolkit.finish_reason(data.get("stop_reason")),
        usage(data.get("usage")),
    )
    result["choices"][0].update(_matched(data.get("stop_reason"), data.get("stop_sequence")))
    return result


def message_id(generation_id: str) -> str:
    """`msg_` and the generation's own part: GET /v1/generation?id=chatcmpl-<the same> finds it."""
    return "msg_" + generation_id.rpartition("-")[2]


def _stop(choice: dict[str, Any], stops: list[str], tool_use: bool) -> tuple[str, str | None]:
    """Anthropic's stop_reason and stop_sequence for a canonical choice.

    A stop sequence is known when the upstream named it (vLLM's `stop_reason`, which the
    Anthropic adapter also writes); a choice that called tools ends in `tool_use` whatever the
    upstream called it.
    """
    finish = choice.get("finish_reason")
    matched = choice.get("stop_reason")
    if finish == "stop" and isinstance(matched, str) and matched in stops:
        return "stop_sequence", matched
    if tool_use and finish in (None, "stop"):
        return "tool_use", None
    return toolkit.stop_reason(finish), None


def _usage(usage: dict[str, Any]) -> dict[str, Any]:
    counted = toolkit.anthropic_usage(usage)
    if isinstance(usage.get("cost"), float | int):
        counted["cost"] = usage["cost"]  # the gateway's: USD, as on chat completions
    return counted


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _thinking_blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    blocks = message.get("thinking_blocks")
    if isinstance(blocks, list) and blocks:
        return [dict(b) for b in blocks if isinstance(b, dict) and b.get("type") in ("thinking", "redacted_thinking")]
    reasoning = shape.reasoning(message) or ""
    return [{"type": "thinking", "thinking": reasoning, "signature": ""}] if reasoning else []


def _input(arguments: Any) -> dict[str, Any]:
    """A tool call's arguments as Anthropic's input object; `{}` when the upstream's were not a JSON object."""
    try:
        value = toolkit.tool_input(arguments)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def message(completion: dict[str, Any], stops: list[str]) -> dict[str, Any]:
    """The Messages API response for a canonical chat.completion."""
    choice = completion["choices"][0] if completion.get("choices") else {}
    answer = choice.get("message") or {}
    content: list[dict[str, Any]] = _thinking_blocks(answer)
    text = _text(answer.get("content"))
    if text:
        content.append({"type": "text", "text": text})
    for call in answer.get("tool_calls") or ():
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or f"toolu_{uuid.uuid4().hex[:24]}",
                "name": function.get("name") or "",
                "input": _input(function.get("arguments")),
            }
        )
    reason, sequence = _stop(choice, stops, any(b["type"] == "tool_use" for b in content))
    return {
        "id": message_id(completion["id"]),
        "type": "message",
        "role": "assistant",
        "model": completion["model"],
        "content": content,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": _usage(completion["usage"]),
    }
