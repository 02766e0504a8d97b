"""One translation toolkit for the protocols that differ from the canonical one (OpenAI chat completions).

Anthropic's Messages API and Bedrock's Converse API share a model of a conversation that OpenAI's
lacks: the system prompt apart from the turns; turns that alternate user/assistant, with tool
results inside the next user turn; tool inputs as objects, not JSON text; stop reasons of their
own; cache reads and writes counted apart from the input; and streams of typed events with
content blocks by index. What translating that model to and from the canonical one takes lives
here once, used both ways: by the translations to providers (wire/anthropic/request_out.py,
wire/converse/) and by the Messages ingress (wire/anthropic/request_in.py).

It also says which parts of a canonical body are Anthropic's own (`ANTHROPIC_FIELDS`,
`ANTHROPIC_KEYS`): the Messages ingress carries them so that a provider speaking Anthropic's
protocol gets the request natively, and chat/egress.py removes them (`portable`) for any other.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import orjson

from gateway.fields import MAX_DEPTH, too_deep

# Anthropic's and Bedrock's stop reasons (they share most of them) as OpenAI's finish_reason.
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
# And back: OpenAI's finish_reason as Anthropic's stop_reason.
STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

# Anthropic's own request features, as the Messages ingress carries them in a canonical body:
# top-level fields, and keys of messages, content parts, tool calls and tools.
ANTHROPIC_FIELDS = ("thinking", "top_k", "context_management", "output_config", "anthropic_beta")
ANTHROPIC_KEYS = frozenset({"cache_control", "thinking_blocks", "is_error", "between_turns"})
# Betas a provider speaking Anthropic's protocol is sent when the caller sent them: each changes what a
# request may say, not what it may cost beyond the reservation's bound. Every other beta is dropped
# (the 1M context window and server tools would change what is billed; files and MCP are refused).
FORWARDED_BETAS = frozenset(
    {
        "claude-code-20250219",
        "interleaved-thinking-2025-05-14",
        "context-management-2025-06-27",
        "mid-conversation-tool-changes-2026-07-01",
        "per-turn-control-2026-07-01",
        "thinking-token-count-2026-05-13",
        "effort-2025-11-24",
        "fine-grained-tool-streaming-2025-05-14",
        "token-efficient-tools-2025-02-19",
        "prompt-caching-2024-07-31",
        "extended-cache-ttl-2025-04-11",
        "output-128k-2025-02-19",
    }
)
BETWEEN_TURNS_BETA = "mid-conversation-tool-changes-2026-07-01"  # system messages among the turns

_DATA_URL = re.compile(r"data:(?P<media>[\w.+-]+/[\w.+-]+)?(?:;[^,;]*)*?;base64,(?P<data>.*)", re.S)


# --- stop reasons ------------------------------------------------------------------------------


def finish_reason(stop_reason: Any) -> str:
    """OpenAI's finish_reason for an Anthropic or Bedrock stop reason; a natural stop when unknown."""
    return FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def stop_reason(finish: Any) -> str:
    """Anthropic's stop_reason for an OpenAI finish_reason; `end_turn` when unknown."""
    return STOP_REASONS.get(finish, "end_turn") if isinstance(finish, str) else "end_turn"


def stop_sequences(stop: Any, *, blank: bool = True) -> list[str]:
    """OpenAI's `stop` (a string or a list) as a list of non-empty stop sequences.

    Anthropic refuses whitespace-only sequences (`blank=False` drops them); Converse takes them.
    """
    values = [stop] if isinstance(stop, str) else [s for s in stop or () if isinstance(s, str)]
    return [s for s in values if (s if blank else s.strip())]


# --- usage -------------------------------------------------------------------------------------


def _count(value: Any) -> int:
    """A token count as providers report it (an integral float too); 0 for anything else."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def openai_usage(
    fresh: Any, completion: Any, read: Any = 0, written: Any = 0, details: bool = True, written_1h: Any = None
) -> dict[str, Any]:
    """OpenAI usage from counts that keep cache reads and writes apart from the fresh input.

    Every input token (fresh, read from and written to the cache) is a prompt token; the split is
    kept in `prompt_tokens_details`, which prices the prompt (chat/service.py), with the part of the
    writes that lives an hour (`cache_write_1h_tokens`, priced apart) where there is one.
    """
    fresh, completion, read, written = _count(fresh), _count(completion), _count(read), _count(written)
    prompt = fresh + read + written
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if details:
        usage["prompt_tokens_details"] = {"cached_tokens": read, "cache_write_tokens": written}
        if written_1h is not None:  # the provider split its writes by lifetime (None: it did not say)
            usage["prompt_tokens_details"]["cache_write_1h_tokens"] = min(_count(written_1h), written)
    return usage


def openai_usage_of(raw: Any, names: tuple[str, str, str, str], details: bool | None = None) -> dict[str, Any]:
    """OpenAI usage from a provider's usage object whose counts go by `names`: (fresh input, output,
    cache reads, cache writes). `details` None: the split is kept only where the provider reported one."""
    raw = raw if isinstance(raw, dict) else {}
    if details is None:
        details = names[2] in raw or names[3] in raw
    return openai_usage(*(raw.get(name) for name in names), details=details)


def anthropic_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """Anthropic usage from OpenAI usage: `input_tokens` counts only what was neither read from nor written
    to the cache, as Anthropic counts it."""
    details = usage.get("prompt_tokens_details")
    details = details if isinstance(details, dict) else {}
    prompt, read, written = (
        _count(usage.get("prompt_tokens")),
        _count(details.get("cached_tokens")),
        _count(details.get("cache_write_tokens")),
    )
    read = min(read, prompt)
    written = min(written, prompt - read)
    return {
        "input_tokens": prompt - read - written,
        "output_tokens": _count(usage.get("completion_tokens")),
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": read,
    }


# --- tool calls --------------------------------------------------------------------------------


def tool_input(arguments: Any) -> Any:
    """A tool call's input as a value: OpenAI carries it as JSON text; ValueError when that is not JSON."""
    if isinstance(arguments, dict):
        return arguments
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        return {}
    try:
        value = orjson.loads(arguments)
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise ValueError("tool arguments are not JSON") from exc
    if too_deep(value):  # JSON text inside a string escapes the body's own check: it would not serialise again
        raise ValueError(f"tool arguments nest more than {MAX_DEPTH} levels deep")
    return value


def tool_arguments(value: Any) -> str:
    """A tool call's input as OpenAI's JSON text."""
    return orjson.dumps(value if value is not None else {}).decode()


# --- media -------------------------------------------------------------------------------------


def media_source(url: str) -> dict[str, Any] | None:
    """An Anthropic image or document `source` for an OpenAI URL (base64 for data URLs); None if neither."""
    if url.startswith("data:"):
        match = _DATA_URL.fullmatch(url)
        if not match or not match.group("media"):
            return None
        return {"type": "base64", "media_type": match.group("media"), "data": match.group("data")}
    if url.startswith(("http://", "https://")):
        return {"type": "url", "url": url}
    return None


def media_url(source: dict[str, Any]) -> str | None:
    """The OpenAI URL for an Anthropic `source` (a data URL for base64); None for sources a URL cannot hold."""
    if source.get("type") == "base64":
        return f"data:{source.get('media_type')};base64,{source.get('data')}"
    if source.get("type") == "url":
        return source.get("url")
    return None


# --- turns -------------------------------------------------------------------------------------


def add_turn(turns: list[dict[str, Any]], role: str, blocks: list[Any]) -> None:
    """Append a turn, or merge it into the last one of the same role: both protocols want turns to alternate.

    An empty turn is skipped (both refuse one), which may let its neighbours merge.
    """
    if not blocks:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)  # parallel tool results share one user turn
    else:
        turns.append({"role": role, "content": blocks})


def results_first(turns: list[dict[str, Any]], is_result: Callable[[Any], bool]) -> None:
    """Tool results lead their user turn: a turn after tool calls must begin with their results."""
    for turn in turns:
        if turn["role"] == "user":
            turn["content"].sort(key=lambda block: not is_result(block))


# --- native features ---------------------------------------------------------------------------


def _plain(item: Any) -> Any:
    if not isinstance(item, dict) or not ANTHROPIC_KEYS & item.keys():
        return item
    return {k: v for k, v in item.items() if k not in ANTHROPIC_KEYS}


def portable(body: dict[str, Any]) -> dict[str, Any]:
    """A canonical body without Anthropic's own features, for providers of other protocols.

    OpenAI's API refuses unknown keys in messages and content parts, and `thinking` or `top_k`
    mean nothing (or something else) elsewhere. The caller's body is not changed.
    """
    sent = {k: v for k, v in body.items() if k not in ANTHROPIC_FIELDS}
    messages = []
    for message in body.get("messages") or ():
        message = _plain(message)
        content = message.get("content")
        if isinstance(content, list):
            message = {**message, "content": [_plain(part) for part in content]}
        if message.get("tool_calls"):
            message = {**message, "tool_calls": [_plain(call) for call in message["tool_calls"]]}
        messages.append(message)
    sent["messages"] = messages
    if body.get("tools"):
        sent["tools"] = [_plain(tool) for tool in body["tools"]]
    return sent


# --- streams -----------------------------------------------------------------------------------


class Chunks:
    """The OpenAI chunks one translated stream becomes: one head, the role first, tool calls by block index.

    Anthropic's and Bedrock's streams both open content blocks by index, and a tool call is one
    block: its id and name come first, then its input in fragments. Each such block becomes one
    OpenAI tool call with a stable `index` of its own.
    """

    def __init__(self, model: Any, id: str) -> None:
        self.head: dict[str, Any] = {
            "id": id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }
        self.started = False
        self.tools: dict[int, int] = {}  # block index -> tool call index
        self.sent: dict[int, int] = {}  # tool call index -> characters of arguments sent

    def chunk(self, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish, **extra}
        return {**self.head, "choices": [choice]}

    def start(self) -> list[dict[str, Any]]:
        """The first chunk, with the role, once."""
        if self.started:
            return []
        self.started = True
        return [self.chunk({"role": "assistant", "content": ""})]

    def tool_call(self, block: int, id: Any, name: Any) -> dict[str, Any]:
        index = self.tools[block] = len(self.tools)
        self.sent[index] = 0
        call = {"index": index, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}
        return self.chunk({"tool_calls": [call]})

    def arguments(self, block: int, fragment: str) -> list[dict[str, Any]]:
        """A fragment of a tool call's input, exactly as the upstream sent it."""
        index = self.tools.get(block)
        if index is None or not fragment:
            return []
        self.sent[index] += len(fragment)
        return [self.chunk({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]})]

    def tool_stop(self, block: int) -> list[dict[str, Any]]:
        """At a tool call's end: `{}` if it sent no input, so that its arguments still parse as JSON."""
        index = self.tools.get(block)
        if index is None or self.sent[index]:
            return []
        return self.arguments(block, "{}")

    def usage(self, usage: dict[str, Any]) -> dict[str, Any]:
        return {**self.head, "choices": [], "usage": usage}
