"""Anthropic's Messages API: its requests as the canonical chat request, and the canonical answer in its shape.

Requests are checked in Anthropic's own terms first, so a 400 names the field the caller sent
(`messages.1.content.0.source`), then translated:

- `system` (a string or text blocks) becomes one system message; text, image (base64 or URL)
  and document blocks (a base64 PDF or a URL become file parts, a text source a text part)
  become content parts; tool_result blocks become tool messages ahead of the rest of their
  turn; tool_use blocks become tool calls (their input as JSON text); custom tools become
  function tools (`input_schema` is `parameters`); `tool_choice` auto/any/tool/none becomes
  auto/required/{function}/none, `disable_parallel_tool_use` `parallel_tool_calls: false`;
  `stop_sequences` is `stop`, `metadata.user_id` is `user`.
- What Anthropic has and the canonical shape lacks travels as Anthropic's own: `thinking` and
  `top_k` at the top; `cache_control` on system blocks, content parts, tool calls, tool
  results and tools (a top-level one goes on the last block, as Anthropic applies it); an
  earlier answer's thinking blocks (with their signatures) as the assistant message's
  `thinking_blocks`; a tool result's `is_error`. The body is marked (egress.NATIVE), so
  providers that speak Anthropic's protocol get all of it (providers/anthropic.py) and any
  other provider none of it (chat/egress.py).
- Refused, as what a sound reservation cannot bound: server tools (web search, code
  execution, ...) and Anthropic-defined tools, whose cost is not in the request, and files by
  id. Other top-level fields (`service_tier`, `container`, `output_config`, ...) are not forwarded.

Answers: a whole `message`, or the event stream (message_start, ping, content_block_start /
delta / stop with text, thinking and tool_use blocks, message_delta, message_stop; `error`
after a failure mid-stream). `usage.input_tokens` excludes cache reads and writes, as
Anthropic counts it; `usage.cost` (USD) is the gateway's, as on chat completions.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

import orjson

from gateway import tokens, toolkit
from gateway.chat import shape
from gateway.chat.egress import NATIVE
from gateway.chat.validation import (
    MAX_STOP_SEQUENCES,
    MAX_TOKENS,
    _get,
    _integer,
    _missing,
    _number,
    _type,
    _wrong_type,
)
from gateway.errors import GatewayError, invalid_request

ROLES = ("user", "assistant")
TOOL_CHOICES = ("auto", "any", "tool", "none")
CUSTOM_TOOL = (None, "custom")
RESULT_BLOCKS = frozenset({"text", "image", "document"})  # what a tool_result's content may hold
# Anthropic's error type for the canonical error object a stream ends with (it carries no status).
STREAM_ERROR_TYPES = {"timeout_error": "timeout_error", "invalid_request_error": "invalid_request_error"}


# --- the request ---------------------------------------------------------------------------------


def _where(*path: Any) -> str:
    return ".".join(str(p) for p in path)


def _unsupported(param: str, what: str) -> GatewayError:
    return invalid_request(f"{param}: {what}", param, "unsupported_content")


def _cached(block: dict[str, Any], part: dict[str, Any], where: str) -> dict[str, Any]:
    """The block's cache_control on its canonical part: the breakpoint Anthropic gets back natively."""
    control = _get(block, "cache_control", dict, "an object", where + ".")
    if control is not None:
        part["cache_control"] = control
    return part


def _source(block: dict[str, Any], where: str) -> tuple[str, dict[str, Any]]:
    source = _get(block, "source", dict, "an object", where + ".", required=True)
    kind = _get(source, "type", str, "a string", where + ".source.", required=True)
    if kind == "base64":
        _get(source, "media_type", str, "a string", where + ".source.", required=True)
        _get(source, "data", str, "a string", where + ".source.", required=True)
    elif kind == "url":
        _get(source, "url", str, "a string", where + ".source.", required=True)
    elif kind == "text" and block["type"] == "document":
        _get(source, "data", str, "a string", where + ".source.", required=True)
    else:
        raise _unsupported(
            where + ".source.type",
            f"a {block['type']} source of type {kind!r} is not supported here; send it as base64 or a URL.",
        )
    return kind, source


def _part(block: Any, where: str) -> dict[str, Any]:
    """A text, image or document block as a canonical content part."""
    if not isinstance(block, dict):
        raise _wrong_type(where, "an object", block)
    kind = block["type"]
    if kind == "text":
        return _cached(block, {"type": "text", "text": _get(block, "text", str, "a string", where + ".", True)}, where)
    source_type, source = _source(block, where)
    if source_type == "text":  # a plain-text document is its text
        return _cached(block, {"type": "text", "text": source["data"]}, where)
    url = toolkit.media_url(source)
    if kind == "image":
        return _cached(block, {"type": "image_url", "image_url": {"url": url}}, where)
    file: dict[str, Any] = {"file_data": url}
    title = _get(block, "title", str, "a string", where + ".")
    if title:
        file["filename"] = title
    return _cached(block, {"type": "file", "file": file}, where)


def _tool_result(block: dict[str, Any], where: str) -> dict[str, Any]:
    tool_use_id = _get(block, "tool_use_id", str, "a string", where + ".", required=True)
    content = block.get("content")
    if content is None:
        content = ""
    elif isinstance(content, list):
        parts = []
        for i, inner in enumerate(content):
            if not isinstance(inner, dict):
                raise _wrong_type(_where(where, "content", i), "an object", inner)
            kind = _get(inner, "type", str, "a string", _where(where, "content", i) + ".", required=True)
            if kind not in RESULT_BLOCKS:
                raise _unsupported(_where(where, "content", i, "type"), f"a tool result cannot hold {kind!r} blocks.")
            parts.append(_part(inner, _where(where, "content", i)))
        content = parts
    elif not isinstance(content, str):
        raise _wrong_type(where + ".content", "a string or an array of content blocks", content)
    message: dict[str, Any] = {"role": "tool", "tool_call_id": tool_use_id, "content": content}
    if _get(block, "is_error", bool, "a boolean", where + ".") is True:
        message["is_error"] = True
    return _cached(block, message, where)


def _tool_call(block: dict[str, Any], where: str) -> dict[str, Any]:
    p = where + "."
    call = {
        "id": _get(block, "id", str, "a string", p, required=True),
        "type": "function",
        "function": {
            "name": _get(block, "name", str, "a string", p, required=True),
            "arguments": toolkit.tool_arguments(_get(block, "input", dict, "an object", p, required=True)),
        },
    }
    return _cached(block, call, where)


def _thinking(block: dict[str, Any], where: str) -> dict[str, Any] | None:
    """An earlier answer's thinking block, sent back as it was; None when it has no signature (it was not
    Anthropic's, and Anthropic would refuse it)."""
    if block["type"] == "redacted_thinking":
        _get(block, "data", str, "a string", where + ".", required=True)
        return block
    _get(block, "thinking", str, "a string", where + ".", required=True)
    return block if _get(block, "signature", str, "a string", where + ".") else None


def _turn(message: Any, where: str) -> list[dict[str, Any]]:
    """One Anthropic turn as canonical messages: a user turn's tool results come first, as tool messages."""
    if not isinstance(message, dict):
        raise _wrong_type(where, "an object", message)
    role = message.get("role")
    if role is None:
        raise _missing(where + ".role")
    if role not in ROLES:
        raise invalid_request(f"{where}.role: Input should be 'user' or 'assistant'.", where + ".role")
    content = message.get("content")
    if content is None:
        raise _missing(where + ".content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise _wrong_type(where + ".content", "a string or an array of content blocks", content)
    results: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    thinking: list[dict[str, Any]] = []
    for i, block in enumerate(content):
        at = _where(where, "content", i)
        if not isinstance(block, dict):
            raise _wrong_type(at, "an object", block)
        kind = _get(block, "type", str, "a string", at + ".", required=True)
        if kind in ("text", "image", "document"):
            parts.append(_part(block, at))
        elif kind == "tool_result" and role == "user":
            results.append(_tool_result(block, at))
        elif kind == "tool_use" and role == "assistant":
            calls.append(_tool_call(block, at))
        elif kind in ("thinking", "redacted_thinking") and role == "assistant":
            kept = _thinking(block, at)
            if kept is not None:
                thinking.append(kept)
        elif kind in ("tool_result", "tool_use", "thinking", "redacted_thinking"):
            raise _unsupported(at + ".type", f"{kind} blocks are not allowed in {role} messages.")
        else:
            raise _unsupported(at + ".type", f"content blocks of type {kind!r} are not supported by this gateway.")
    if role == "user":
        return results + ([{"role": "user", "content": parts}] if parts or not results else [])
    turn: dict[str, Any] = {"role": "assistant", "content": _assistant_text(parts)}
    if calls:
        turn["tool_calls"] = calls
    if thinking:
        turn["thinking_blocks"] = thinking
    return [turn]


def _assistant_text(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]] | None:
    """An assistant's text as one string (what every OpenAI-compatible server takes), or parts where a
    block carries a cache breakpoint or is not text."""
    if all(p["type"] == "text" and "cache_control" not in p for p in parts):
        return "".join(p["text"] for p in parts) or None
    return parts


def _mark_last(messages: list[dict[str, Any]], control: dict[str, Any]) -> None:
    """A top-level `cache_control`, as Anthropic applies it: on the last cacheable block of the request."""
    last = messages[-1]
    content = last.get("content")
    if last["role"] == "tool":
        last.setdefault("cache_control", control)
    elif last.get("tool_calls"):
        last["tool_calls"][-1].setdefault("cache_control", control)
    elif isinstance(content, str) and content:
        last["content"] = [{"type": "text", "text": content, "cache_control": control}]
    elif isinstance(content, list) and content:
        content[-1].setdefault("cache_control", control)


def _system(body: dict[str, Any]) -> list[dict[str, Any]]:
    system = body.get("system")
    if system is None or system == "":
        return []
    if isinstance(system, str):
        return [{"role": "system", "content": system}]
    if not isinstance(system, list):
        raise _wrong_type("system", "a string or an array of text blocks", system)
    parts = []
    for i, block in enumerate(system):
        at = _where("system", i)
        if not isinstance(block, dict) or block.get("type") != "text":
            raise invalid_request(f"{at}: system blocks must be text blocks.", at)
        parts.append(_part(block, at))
    return [{"role": "system", "content": parts}] if parts else []


def _tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    tools = []
    for i, tool in enumerate(_get(body, "tools", list, "an array of tools") or ()):
        at = _where("tools", i)
        if not isinstance(tool, dict):
            raise _wrong_type(at, "a tool object", tool)
        kind = tool.get("type")
        if kind not in CUSTOM_TOOL:
            raise _unsupported(
                at + ".type",
                f"tools of type {kind!r} (Anthropic's server and built-in tools) are not offered by this gateway, "
                "which could not bound what they cost; define a custom tool with an input_schema instead.",
            )
        function = {"name": _get(tool, "name", str, "a string", at + ".", required=True)}
        description = _get(tool, "description", str, "a string", at + ".")
        if description is not None:
            function["description"] = description
        function["parameters"] = _get(tool, "input_schema", dict, "an object (a JSON Schema)", at + ".", True)
        tools.append(_cached(tool, {"type": "function", "function": function}, at))
    return tools


def _tool_choice(body: dict[str, Any], canonical: dict[str, Any]) -> None:
    choice = _get(body, "tool_choice", dict, "an object")
    if choice is None:
        return
    kind = _get(choice, "type", str, "a string", "tool_choice.", required=True)
    if kind not in TOOL_CHOICES:
        raise invalid_request(
            f"tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'; got {kind!r}.", "tool_choice.type"
        )
    if kind == "tool":
        name = _get(choice, "name", str, "a string", "tool_choice.", required=True)
        canonical["tool_choice"] = {"type": "function", "function": {"name": name}}
    else:
        canonical["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[kind]
    if _get(choice, "disable_parallel_tool_use", bool, "a boolean", "tool_choice.") is True:
        canonical["parallel_tool_calls"] = False


def _options(body: dict[str, Any], canonical: dict[str, Any]) -> None:
    """Sampling, stop sequences, streaming, the user and thinking, checked in Anthropic's terms."""
    _number(body, "temperature", 0, 1)
    _number(body, "top_p", 0, 1)
    _integer(body, "top_k", 0, MAX_TOKENS)
    for name in ("temperature", "top_p", "top_k"):
        if body.get(name) is not None:
            canonical[name] = body[name]
    stops = _get(body, "stop_sequences", list, "an array of strings")
    for i, stop in enumerate(stops or ()):
        if not isinstance(stop, str):
            raise _wrong_type(_where("stop_sequences", i), "a string", stop)
    if stops and len(stops) > MAX_STOP_SEQUENCES:
        raise invalid_request(
            f"stop_sequences: at most {MAX_STOP_SEQUENCES} stop sequences are supported; got {len(stops)}.",
            "stop_sequences",
        )
    if stops:
        canonical["stop"] = stops
    if _get(body, "stream", bool, "a boolean"):
        canonical["stream"] = True
    metadata = _get(body, "metadata", dict, "an object") or {}
    user = _get(metadata, "user_id", str, "a string", "metadata.")
    if user:
        canonical["user"] = user
    thinking = _get(body, "thinking", dict, "an object")
    if thinking is not None:
        _get(thinking, "type", str, "a string", "thinking.", required=True)
        _integer(thinking, "budget_tokens", 1, MAX_TOKENS, "thinking.")
        canonical["thinking"] = thinking


def to_canonical(body: Any, counting: bool = False) -> dict[str, Any]:
    """The canonical chat request for a Messages request (or, `counting`, a count_tokens one: no max_tokens).

    A malformed request is a 400 that names the Anthropic field; the result is then validated as
    any chat request is (chat/validation.py), so everything behind treats it as one.
    """
    if not isinstance(body, dict):
        raise invalid_request(f"The request body must be a JSON object, got {_type(body)}.")
    max_tokens = _integer(body, "max_tokens", 1, MAX_TOKENS)
    if max_tokens is None and not counting:
        raise _missing("max_tokens")
    turns = _get(body, "messages", list, "an array", required=True)
    if not turns:
        raise invalid_request("messages: at least one message is required.", "messages")
    messages = _system(body)
    for i, turn in enumerate(turns):
        messages += _turn(turn, _where("messages", i))
    control = _get(body, "cache_control", dict, "an object")
    if control is not None:
        _mark_last(messages, control)
    # `model` is the same field in both protocols: validate() checks it, naming it as the caller did.
    canonical: dict[str, Any] = {"model": body.get("model"), "messages": messages, NATIVE: "anthropic"}
    if max_tokens is not None:
        canonical["max_tokens"] = max_tokens
    tools = _tools(body)
    if tools:
        canonical["tools"] = tools
    _tool_choice(body, canonical)
    _options(body, canonical)
    return canonical


def origin(body: dict[str, Any], param: str) -> str:
    """The Anthropic field behind a canonical one (`messages[3].content[0]` -> `messages.1.content.2`).

    Only errors need it, so the translation does not keep this map: it is rebuilt here.
    """
    head, _, rest = param.partition("]")
    if not head.startswith("messages[") or not head[9:].isdigit():
        return param
    places: list[tuple[str, list[int] | None]] = []  # per canonical message: its turn, and its blocks
    system = body.get("system")
    if isinstance(system, list) and system:
        places.append(("system", list(range(len(system)))))
    elif system:
        places.append(("system", None))
    for i, turn in enumerate(body.get("messages") or ()):
        content = turn.get("content")
        if not isinstance(content, list):
            places.append((f"messages.{i}", None))
            continue
        kinds = [b.get("type") for b in content]
        results = [j for j, kind in enumerate(kinds) if kind == "tool_result"]
        places += [(f"messages.{i}.content.{j}", None) for j in results]
        if turn.get("role") == "assistant" or len(results) < len(content) or not results:
            blocks = [j for j, kind in enumerate(kinds) if kind in ("text", "image", "document")]
            places.append((f"messages.{i}", blocks))
    index = int(head[9:])
    if index >= len(places):
        return param
    turn, blocks = places[index]
    rest = rest.replace("[", ".").replace("]", "")  # Anthropic writes paths with dots
    j, _, tail = rest.removeprefix(".content.").partition(".")
    if blocks is not None and rest.startswith(".content.") and j.isdigit() and int(j) < len(blocks):
        block = blocks[int(j)]
        return ".".join(p for p in (turn if turn == "system" else f"{turn}.content", str(block), tail) if p)
    return turn + rest


def estimate(canonical: dict[str, Any]) -> int:
    """Input tokens by gateway/tokens.py's estimate (words and punctuation; no tokenizer): messages and tools."""
    total = tokens.count_messages(canonical["messages"])
    for message in canonical["messages"]:
        for block in message.get("thinking_blocks") or ():
            total += tokens.count(str(block.get("thinking") or ""))
    if canonical.get("tools"):
        total += tokens.count(orjson.dumps(canonical["tools"]).decode())
    return total


# --- the answer ----------------------------------------------------------------------------------


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


def event(payload: dict[str, Any]) -> bytes:
    return b"event: " + payload["type"].encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


class _Events:
    """Canonical chunks in, Anthropic's stream events out: one content block open at a time."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = stops
        self.index = -1  # the last block opened
        self.open: str | None = None  # its type, while it is open
        self.tools: dict[int, int] = {}  # canonical tool call index -> block index
        self.choice: dict[str, Any] = {}  # finish_reason and stop_reason, as the chunks said them

    def start(self, chunk: dict[str, Any], input_tokens: int) -> list[bytes]:
        # An estimate (tokens.py), as nothing is counted yet: message_delta carries the upstream's count.
        usage = {
            "input_tokens": input_tokens,
            "output_tokens": 0,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }
        message = {
            "id": message_id(chunk["id"]),
            "type": "message",
            "role": "assistant",
            "model": chunk["model"],
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

    def feed(self, chunk: dict[str, Any]) -> list[bytes]:
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

    def end(self, usage: dict[str, Any]) -> list[bytes]:
        reason, sequence = _stop(self.choice, self.stops, bool(self.tools))
        delta = {"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": sequence}}
        return [*self._close(), event({**delta, "usage": _usage(usage)}), event({"type": "message_stop"})]


def _stream_error(error: dict[str, Any]) -> bytes:
    kind = STREAM_ERROR_TYPES.get(error.get("type"), "api_error")
    return event({"type": "error", "error": {"type": kind, "message": str(error.get("message") or kind)}})


async def sse(chunks: AsyncGenerator[dict[str, Any]], canonical: dict[str, Any]) -> AsyncIterator[bytes]:
    """The canonical stream as Anthropic's events, forwarded as they come; `event: error` after a failure.

    The canonical generator settles before its last item, and is closed here when the client
    hangs up, so the request is billed at once either way.
    """
    stops = canonical.get("stop") or []
    events = _Events(stops)
    started = False
    async with aclosing(chunks):
        async for chunk in chunks:
            if "error" in chunk:
                yield _stream_error(chunk["error"])
                return
            if not started:
                started = True
                for line in events.start(chunk, estimate(canonical)):
                    yield line
            if chunk["choices"]:
                for line in events.feed(chunk):
                    yield line
            elif isinstance(chunk.get("usage"), dict):
                for line in events.end(chunk["usage"]):
                    yield line
