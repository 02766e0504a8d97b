"""A Converse answer as the canonical chat.completion."""

from __future__ import annotations

import uuid
from typing import Any

from gateway.upstream import chat_completion
from gateway.wire import toolkit


def usage(raw: Any) -> dict[str, Any]:
    """Bedrock counts cache reads and writes apart from inputTokens; OpenAI's prompt_tokens holds all."""
    return toolkit.openai_usage_of(
        raw, ("inputTokens", "outputTokens", "cacheReadInputTokens", "cacheWriteInputTokens")
    )


def completion(response: dict[str, Any], model: str) -> dict[str, Any]:
    """A chat.completion from a Converse response (reasoning blocks are not forwarded)."""
    content = ((response.get("output") or {}).get("message") or {}).get("content") or ()
    text = "".join(b["text"] for b in content if isinstance(b.get("text"), str))
    calls = [
        {
            "id": b["toolUse"]["toolUseId"],
            "type": "function",
            "function": {"name": b["toolUse"]["name"], "arguments": toolkit.tool_arguments(b["toolUse"].get("input"))},
        }
        for b in content
        if isinstance(b.get("toolUse"), dict)
    ]
    message: dict[str, Any] = {"role": "assistant", "content": text or (None if calls else ""), "refusal": None}
    if calls:
        message["tool_calls"] = calls
    return chat_completion(
        f"chatcmpl-{uuid.uuid4().hex}",
        model,
        message,
        toolkit.finish_reason(response.get("stopReason")),
        usage(response.get("usage")),
    )
