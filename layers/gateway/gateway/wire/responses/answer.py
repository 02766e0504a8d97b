"""A Response from the canonical chat.completion: reasoning, message and function_call items, and usage
with the cost the service settled, in USD."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

from gateway.stats.generations import PREFIX as GENERATION_PREFIX
from gateway.wire.chat import shape

if TYPE_CHECKING:
    from gateway.wire.responses.request import Translation


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def usage(chat_usage: Any) -> dict[str, Any] | None:
    """Chat usage (shape.usage's, with the cost the service added) in the Responses shape, cost kept."""
    if not isinstance(chat_usage, dict):
        return None
    prompt = chat_usage.get("prompt_tokens_details")
    prompt = prompt if isinstance(prompt, dict) else {}
    completion = chat_usage.get("completion_tokens_details")
    completion = completion if isinstance(completion, dict) else {}
    input_tokens, output_tokens = _int(chat_usage.get("prompt_tokens")), _int(chat_usage.get("completion_tokens"))
    result: dict[str, Any] = {
        "input_tokens": input_tokens,
        "input_tokens_details": {
            "cached_tokens": _int(prompt.get("cached_tokens")),
            "cache_write_tokens": _int(prompt.get("cache_write_tokens")),
        },
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": _int(completion.get("reasoning_tokens"))},
        "total_tokens": input_tokens + output_tokens,
    }
    if isinstance(chat_usage.get("cost"), int | float):
        result["cost"] = chat_usage["cost"]  # USD, as on chat completions; beyond OpenAI's shape, which allows it
    return result


def _status(finish_reason: Any) -> tuple[str, dict[str, str] | None]:
    if finish_reason == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if finish_reason == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def _suffix(chat_id: Any) -> str:
    """Our ids share the generation id's tail, so `resp_X` is found at GET /v1/generation?id=chatcmpl-X."""
    if isinstance(chat_id, str) and chat_id.startswith(GENERATION_PREFIX):
        return chat_id[len(GENERATION_PREFIX) :]
    return uuid.uuid4().hex


def _response(
    translation: Translation,
    suffix: str,
    model: str,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None,
    incomplete: dict[str, str] | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "id": f"resp_{suffix}",
        "object": "response",
        "created_at": translation.created_at,
        "status": status,
        "background": False,
        "completed_at": int(time.time()) if status == "completed" else None,
        "error": error,
        "incomplete_details": incomplete,
        "model": model,
        "output": output,
        "usage": usage,
        **translation.echo,
    }


def whole(completion: dict[str, Any], translation: Translation) -> dict[str, Any]:
    """A chat.completion (shape.whole's, usage and cost included) as a Response object."""
    suffix = _suffix(completion.get("id"))
    choices = completion.get("choices") or [{}]
    choice, message = choices[0], choices[0].get("message") or {}
    status, incomplete = _status(choice.get("finish_reason"))
    output: list[dict[str, Any]] = []
    reasoning = shape.reasoning(message)
    if reasoning:
        output.append(_reasoning_item(f"rs_{suffix}_0", reasoning, "completed"))
    parts: list[dict[str, Any]] = []
    content = message.get("content")
    if isinstance(content, list):  # a provider that answers in parts
        content = "".join(str(p.get("text") or "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    if isinstance(content, str) and content:
        parts.append(_output_text(content))
    if isinstance(message.get("refusal"), str) and message["refusal"]:
        parts.append({"type": "refusal", "refusal": message["refusal"]})
    listed = message.get("tool_calls")
    calls = [c for c in listed if isinstance(c, dict)] if isinstance(listed, list) else []
    if parts or not calls:
        message_item = _message_item(f"msg_{suffix}_{len(output)}", "completed")
        message_item["content"] = parts or [_output_text("")]
        output.append(message_item)
    for call in calls:
        custom = isinstance(call.get("custom"), dict)
        inner = call["custom"] if custom else call["function"] if isinstance(call.get("function"), dict) else {}
        call_id = call["id"] if isinstance(call.get("id"), str) else f"call_{uuid.uuid4().hex}"
        item = _call_item(f"{'ctc' if custom else 'fc'}_{suffix}_{len(output)}", call_id, "completed", custom)
        _name(item, str(inner.get("name") or ""), translation)
        item[CALL_TEXT[item["type"]]] = str(inner.get("input" if custom else "arguments") or "")
        output.append(item)
    if incomplete:
        output[-1]["status"] = "incomplete"  # the item the limit cut
    return _response(
        translation, suffix, completion["model"], status, output, usage(completion.get("usage")), incomplete
    )


def _output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _message_item(item_id: str, status: str) -> dict[str, Any]:
    return {"id": item_id, "type": "message", "role": "assistant", "status": status, "content": []}


def _reasoning_item(item_id: str, text: str | None, status: str) -> dict[str, Any]:
    """The reasoning a provider returned, as the item's summary: the part clients show (the AI SDK reads only
    summaries, Codex CLI shows them by default); OpenAI's own raw reasoning is never returned at all."""
    summary = [{"type": "summary_text", "text": text}] if text is not None else []
    return {"id": item_id, "type": "reasoning", "summary": summary, "status": status}


# A call's item type and the field its text goes in: a function's JSON arguments, a custom tool's input.
CALL_TEXT = {"function_call": "arguments", "custom_tool_call": "input"}


def _call_item(item_id: str, call_id: str, status: str, custom: bool = False) -> dict[str, Any]:
    kind = "custom_tool_call" if custom else "function_call"
    return {"id": item_id, "type": kind, "call_id": call_id, "name": "", CALL_TEXT[kind]: "", "status": status}


def _name(item: dict[str, Any], name: str, translation: Translation) -> None:
    """The called function's name, and the namespace it was declared in (the client looks it up there)."""
    item["name"] = name
    if name in translation.namespaces:
        item["namespace"] = translation.namespaces[name]
