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
  providers that speak Anthropic's protocol get all of it (wire/anthropic/request_out.py) and any
  other provider none of it (chat/egress.py).
- System messages among the turns (as Claude Code sends its environment) stay where they were
  said: in place for every provider, and as system turns for one that speaks Anthropic's protocol,
  with the beta that allows them. `context_management` and `output_config` (effort) travel too,
  and the `anthropic-beta` values in toolkit.FORWARDED_BETAS; other betas are dropped.
- Refused, as what a sound reservation cannot bound: server tools (web search, code
  execution, ...) and Anthropic-defined tools, whose cost is not in the request, and files by
  id. Other top-level fields (`service_tier`, `container`, `mcp_servers`, ...) are not forwarded.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway import tokens
from gateway.errors import GatewayError, invalid_request
from gateway.fields import field, integer, missing, number, type_name, wrong_type
from gateway.wire import toolkit
from gateway.wire.chat.request import MAX_STOP_SEQUENCES, MAX_TOKENS, NATIVE

ROLES = ("user", "assistant", "system")
TOOL_CHOICES = ("auto", "any", "tool", "none")
CUSTOM_TOOL = (None, "custom")
RESULT_BLOCKS = frozenset({"text", "image", "document"})  # what a tool_result's content may hold
# --- the request ---------------------------------------------------------------------------------


def _where(*path: Any) -> str:
    return ".".join(str(p) for p in path)


def _unsupported(param: str, what: str) -> GatewayError:
    return invalid_request(f"{param}: {what}", param, "unsupported_content")


def _cached(block: dict[str, Any], part: dict[str, Any], where: str) -> dict[str, Any]:
    """The block's cache_control on its canonical part: the breakpoint Anthropic gets back natively."""
    control = field(block, "cache_control", dict, "an object", where + ".")
    if control is not None:
        part["cache_control"] = control
    return part


def _source(block: dict[str, Any], where: str) -> tuple[str, dict[str, Any]]:
    source = field(block, "source", dict, "an object", where + ".", required=True)
    kind = field(source, "type", str, "a string", where + ".source.", required=True)
    if kind == "base64":
        field(source, "media_type", str, "a string", where + ".source.", required=True)
        field(source, "data", str, "a string", where + ".source.", required=True)
    elif kind == "url":
        field(source, "url", str, "a string", where + ".source.", required=True)
    elif kind == "text" and block["type"] == "document":
        field(source, "data", str, "a string", where + ".source.", required=True)
    else:
        raise _unsupported(
            where + ".source.type",
            f"a {block['type']} source of type {kind!r} is not supported here; send it as base64 or a URL.",
        )
    return kind, source


def _part(block: Any, where: str) -> dict[str, Any]:
    """A text, image or document block as a canonical content part."""
    if not isinstance(block, dict):
        raise wrong_type(where, "an object", block)
    kind = block["type"]
    if kind == "text":
        return _cached(block, {"type": "text", "text": field(block, "text", str, "a string", where + ".", True)}, where)
    source_type, source = _source(block, where)
    if source_type == "text":  # a plain-text document is its text
        return _cached(block, {"type": "text", "text": source["data"]}, where)
    url = toolkit.media_url(source)
    if kind == "image":
        return _cached(block, {"type": "image_url", "image_url": {"url": url}}, where)
    file: dict[str, Any] = {"file_data": url}
    title = field(block, "title", str, "a string", where + ".")
    if title:
        file["filename"] = title
    return _cached(block, {"type": "file", "file": file}, where)


def _tool_result(block: dict[str, Any], where: str) -> dict[str, Any]:
    tool_use_id = field(block, "tool_use_id", str, "a string", where + ".", required=True)
    content = block.get("content")
    if content is None:
        content = ""
    elif isinstance(content, list):
        parts = []
        for i, inner in enumerate(content):
            if not isinstance(inner, dict):
                raise wrong_type(_where(where, "content", i), "an object", inner)
            kind = field(inner, "type", str, "a string", _where(where, "content", i) + ".", required=True)
            if kind not in RESULT_BLOCKS:
                raise _unsupported(_where(where, "content", i, "type"), f"a tool result cannot hold {kind!r} blocks.")
            parts.append(_part(inner, _where(where, "content", i)))
        content = parts
    elif not isinstance(content, str):
        raise wrong_type(where + ".content", "a string or an array of content blocks", content)
    message: dict[str, Any] = {"role": "tool", "tool_call_id": tool_use_id, "content": content}
    if field(block, "is_error", bool, "a boolean", where + ".") is True:
        message["is_error"] = True
    return _cached(block, message, where)


def _tool_call(block: dict[str, Any], where: str) -> dict[str, Any]:
    p = where + "."
    call = {
        "id": field(block, "id", str, "a string", p, required=True),
        "type": "function",
        "function": {
            "name": field(block, "name", str, "a string", p, required=True),
            "arguments": toolkit.tool_arguments(field(block, "input", dict, "an object", p, required=True)),
        },
    }
    return _cached(block, call, where)


def _thinking(block: dict[str, Any], where: str) -> dict[str, Any] | None:
    """An earlier answer's thinking block, sent back as it was; None when it has no signature (it was not
    Anthropic's, and Anthropic would refuse it)."""
    if block["type"] == "redacted_thinking":
        field(block, "data", str, "a string", where + ".", required=True)
        return block
    field(block, "thinking", str, "a string", where + ".", required=True)
    return block if field(block, "signature", str, "a string", where + ".") else None


def _turn(message: Any, where: str) -> list[dict[str, Any]]:
    """One Anthropic turn as canonical messages: a user turn's tool results come first, as tool messages."""
    if not isinstance(message, dict):
        raise wrong_type(where, "an object", message)
    role = message.get("role")
    if role is None:
        raise missing(where + ".role")
    if role not in ROLES:
        raise invalid_request(f"{where}.role: Input should be 'user', 'assistant' or 'system'.", where + ".role")
    content = message.get("content")
    if content is None:
        raise missing(where + ".content")
    if role == "system":  # an instruction among the turns, where it was said (Claude Code's environment)
        return [{**said, "between_turns": True} for said in _system_blocks(content, where)]
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise wrong_type(where + ".content", "a string or an array of content blocks", content)
    results: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    thinking: list[dict[str, Any]] = []
    for i, block in enumerate(content):
        at = _where(where, "content", i)
        if not isinstance(block, dict):
            raise wrong_type(at, "an object", block)
        kind = field(block, "type", str, "a string", at + ".", required=True)
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


def _system_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    """A system prompt (a string or text blocks) as at most one canonical system message."""
    if content is None or content == "":
        return []
    if isinstance(content, str):
        return [{"role": "system", "content": content}]
    if not isinstance(content, list):
        raise wrong_type(where, "a string or an array of text blocks", content)
    parts = []
    for i, block in enumerate(content):
        at = _where(where, i) if where == "system" else _where(where, "content", i)
        if not isinstance(block, dict) or block.get("type") != "text":
            raise invalid_request(f"{at}: system blocks must be text blocks.", at)
        parts.append(_part(block, at))
    return [{"role": "system", "content": parts}] if parts else []


def _system(body: dict[str, Any]) -> list[dict[str, Any]]:
    return _system_blocks(body.get("system"), "system")


def _tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    tools = []
    for i, tool in enumerate(field(body, "tools", list, "an array of tools") or ()):
        at = _where("tools", i)
        if not isinstance(tool, dict):
            raise wrong_type(at, "a tool object", tool)
        kind = tool.get("type")
        if kind not in CUSTOM_TOOL:
            raise _unsupported(
                at + ".type",
                f"tools of type {kind!r} (Anthropic's server and built-in tools) are not offered by this gateway, "
                "which could not bound what they cost; define a custom tool with an input_schema instead.",
            )
        function = {"name": field(tool, "name", str, "a string", at + ".", required=True)}
        description = field(tool, "description", str, "a string", at + ".")
        if description is not None:
            function["description"] = description
        function["parameters"] = field(tool, "input_schema", dict, "an object (a JSON Schema)", at + ".", True)
        tools.append(_cached(tool, {"type": "function", "function": function}, at))
    return tools


def _tool_choice(body: dict[str, Any], canonical: dict[str, Any]) -> None:
    choice = field(body, "tool_choice", dict, "an object")
    if choice is None:
        return
    kind = field(choice, "type", str, "a string", "tool_choice.", required=True)
    if kind not in TOOL_CHOICES:
        raise invalid_request(
            f"tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'; got {kind!r}.", "tool_choice.type"
        )
    if kind == "tool":
        name = field(choice, "name", str, "a string", "tool_choice.", required=True)
        canonical["tool_choice"] = {"type": "function", "function": {"name": name}}
    else:
        canonical["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[kind]
    if field(choice, "disable_parallel_tool_use", bool, "a boolean", "tool_choice.") is True:
        canonical["parallel_tool_calls"] = False


def _options(body: dict[str, Any], canonical: dict[str, Any]) -> None:
    """Sampling, stop sequences, streaming, the user and thinking, checked in Anthropic's terms."""
    number(body, "temperature", 0, 1)
    number(body, "top_p", 0, 1)
    integer(body, "top_k", 0, MAX_TOKENS)
    for name in ("temperature", "top_p", "top_k"):
        if body.get(name) is not None:
            canonical[name] = body[name]
    stops = field(body, "stop_sequences", list, "an array of strings")
    for i, stop in enumerate(stops or ()):
        if not isinstance(stop, str):
            raise wrong_type(_where("stop_sequences", i), "a string", stop)
    if stops and len(stops) > MAX_STOP_SEQUENCES:
        raise invalid_request(
            f"stop_sequences: at most {MAX_STOP_SEQUENCES} stop sequences are supported; got {len(stops)}.",
            "stop_sequences",
        )
    if stops:
        canonical["stop"] = stops
    if field(body, "stream", bool, "a boolean"):
        canonical["stream"] = True
    metadata = field(body, "metadata", dict, "an object") or {}
    user = field(metadata, "user_id", str, "a string", "metadata.")
    if user:
        canonical["user"] = user
    thinking = field(body, "thinking", dict, "an object")
    if thinking is not None:
        field(thinking, "type", str, "a string", "thinking.", required=True)
        integer(thinking, "budget_tokens", 1, MAX_TOKENS, "thinking.")
        canonical["thinking"] = thinking
    # Within max_tokens whatever they say: context edits (dropping old thinking) and effort.
    for name in ("context_management", "output_config"):
        value = field(body, name, dict, "an object")
        if value is not None:
            canonical[name] = value


def betas(header: str | None, canonical: dict[str, Any]) -> list[str]:
    """The caller's `anthropic-beta` values an Anthropic provider is sent (toolkit.FORWARDED_BETAS); the
    rest are dropped, the request served all the same. System messages among the turns need their beta."""
    sent = [b.strip() for b in (header or "").split(",") if b.strip() in toolkit.FORWARDED_BETAS]
    between = any(m.get("between_turns") for m in canonical["messages"])
    if between and toolkit.BETWEEN_TURNS_BETA not in sent:
        sent.append(toolkit.BETWEEN_TURNS_BETA)
    return list(dict.fromkeys(sent))


def to_canonical(body: Any, counting: bool = False, beta: str | None = None) -> dict[str, Any]:
    """The canonical chat request for a Messages request (or, `counting`, a count_tokens one: no max_tokens);
    `beta` is the request's `anthropic-beta` header.

    A malformed request is a 400 that names the Anthropic field; the result is then validated as
    any chat request is (wire/chat/request.py), so everything behind treats it as one.
    """
    if not isinstance(body, dict):
        raise invalid_request(f"The request body must be a JSON object, got {type_name(body)}.")
    max_tokens = integer(body, "max_tokens", 1, MAX_TOKENS)
    if max_tokens is None and not counting:
        raise missing("max_tokens")
    turns = field(body, "messages", list, "an array", required=True)
    if not turns:
        raise invalid_request("messages: at least one message is required.", "messages")
    messages = _system(body)
    for i, turn in enumerate(turns):
        messages += _turn(turn, _where("messages", i))
    control = field(body, "cache_control", dict, "an object")
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
    forwarded = betas(beta, canonical)
    if forwarded:
        canonical["anthropic_beta"] = forwarded
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
