"""The canonical chat request as Anthropic's Messages API request, for providers that speak it.

Anthropic's protocol differs from OpenAI's in ways a pass-through cannot hide: the system
prompt is a top-level field, turns must alternate user/assistant, tool calls and their
results are content blocks, `max_tokens` is required, and streams are typed events
(message_start, content_block_*, message_delta, message_stop) rather than chunks. This
module translates both ways so callers never see the difference.

Parameter choices, each following a documented behaviour:
- temperature is clamped to Anthropic's 0..1 range, never rescaled: Anthropic's own
  OpenAI-compatibility layer caps values above 1 at 1 (docs.anthropic.com/en/api/openai-sdk),
  LiteLLM forwards the value unchanged, and no popular gateway scales 0..2 onto 0..1;
  clamping keeps a request that OpenAI accepts from becoming a 400.
- newer Claude models reject `temperature` together with `top_p` ("cannot both be specified
  for this model"), and Anthropic's reference says to alter one or the other: when both are
  sent, temperature wins and top_p is dropped.
- `max_tokens` defaults to 4096 when the caller sets neither max_tokens nor
  max_completion_tokens, as LiteLLM does (Anthropic refuses a request without it).
- `user` becomes `metadata.user_id`; Anthropic refuses e-mail addresses and phone numbers
  there, so such a value is sent as its SHA-256 (an opaque id, which is what it asks for).
- OpenAI-only fields (n, logprobs, penalties, seed, response_format, metadata, ...) are
  dropped, as Anthropic's compatibility layer ignores them; Anthropic-native `top_k` and
  `thinking` pass through, and so do `cache_control` (on content parts, messages, tool calls
  and tools), an assistant message's `thinking_blocks` and a tool message's `is_error`, which
  the Messages ingress (wire/anthropic/request_in.py) carries so that Anthropic gets its request natively.

What this and the Bedrock adapter share (stop reasons, usage, tool inputs, turns, stream
state) is gateway/blocks.py.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Any

import orjson

from gateway.upstream import UpstreamHTTPError
from gateway.wire import toolkit

DEFAULT_MAX_TOKENS = 4096
MIN_THINKING_BUDGET = 1024

# The HTTP status each documented error type comes with, for errors that arrive mid-stream.
_NOT_ID = re.compile(r"[^a-zA-Z0-9_-]")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+?[\d\s().-]{7,}$")


class _Refused(UpstreamHTTPError):
    """A request Anthropic cannot express (a malformed image URL, tool arguments that are not JSON).

    Raised as a 400 so that the caller is told to fix it, just as Anthropic would have.
    """

    def __init__(self, provider: str, message: str) -> None:
        super().__init__(f"{provider} cannot accept the request: {message}", status=400)


# ---------------------------------------------------------------- request translation


def _media_source(url: str, provider: str, where: str) -> dict[str, Any]:
    """An image or document `source`: data URLs become base64, http(s) URLs are fetched by Anthropic."""
    source = toolkit.media_source(url)
    if source is not None:
        return source
    if url.startswith("data:"):
        raise _Refused(provider, f"{where} is a data URL that is not base64 with a media type")
    raise _Refused(provider, f"{where} must be an http(s) URL or a base64 data URL")


def _block(part: Any, provider: str, where: str) -> dict[str, Any] | None:
    """One OpenAI content part as an Anthropic content block (None for an empty text part)."""
    if isinstance(part, str):
        return {"type": "text", "text": part} if part else None
    if not isinstance(part, dict):
        raise _Refused(provider, f"{where} is not a content part")
    kind = part.get("type")
    block: dict[str, Any]
    if kind in ("text", "refusal"):
        text = part.get(kind)
        if not isinstance(text, str) or not text:
            return None  # Anthropic refuses empty text blocks
        block = {"type": "text", "text": text}
    elif kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        if not isinstance(url, str):
            raise _Refused(provider, f"{where}.image_url.url is missing")
        block = {"type": "image", "source": _media_source(url, provider, f"{where}.image_url.url")}
    elif kind == "file" and isinstance(part.get("file"), dict) and part["file"].get("file_data"):
        data = part["file"]["file_data"]
        block = {"type": "document", "source": _media_source(data, provider, f"{where}.file.file_data")}
    else:  # validation lets no other kind through; a foreign block is never forwarded as it came
        raise _Refused(provider, f"{where} is a content part of type {kind!r}, which has no Anthropic block")
    if "cache_control" in part:
        block["cache_control"] = part["cache_control"]
    return block


def _blocks(message: dict[str, Any], provider: str, where: str) -> list[dict[str, Any]]:
    """A message's content as blocks; a message-level cache_control marks its last block."""
    content = message.get("content")
    if content is None:
        items: list[Any] = []
    elif isinstance(content, list):
        items = content
    else:
        items = [content if isinstance(content, str) else str(content)]
    blocks = [b for i, part in enumerate(items) if (b := _block(part, provider, f"{where}.content[{i}]"))]
    if blocks and isinstance(message.get("cache_control"), dict) and "cache_control" not in blocks[-1]:
        blocks[-1]["cache_control"] = message["cache_control"]
    return blocks


def _tool_id(value: Any) -> str:
    """Anthropic ids match ^[a-zA-Z0-9_-]+$; some OpenAI-style clients send ids like "functions.f:0"."""
    return _NOT_ID.sub("_", str(value or "")) or f"toolu_{uuid.uuid4().hex[:24]}"


def _tool_input(arguments: Any, provider: str, where: str) -> dict[str, Any]:
    """Anthropic's tool_use.input is an object; OpenAI's arguments are that object as JSON text."""
    try:
        value = toolkit.tool_input(arguments)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise _Refused(provider, f"{where}.function.arguments is not a JSON object")
    return value


def _tool_result(message: dict[str, Any], provider: str, where: str) -> dict[str, Any]:
    content = message.get("content")
    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": _tool_id(message.get("tool_call_id"))}
    if isinstance(content, list):
        blocks = _blocks(message, provider, where)
        if blocks:
            result["content"] = blocks
    elif content is not None and content != "":
        result["content"] = content if isinstance(content, str) else orjson.dumps(content).decode()
    if isinstance(message.get("cache_control"), dict) and not isinstance(result.get("content"), list):
        result["cache_control"] = message["cache_control"]
    if message.get("is_error") is True:  # carried by the Messages ingress
        result["is_error"] = True
    return result


def _system(messages: list[dict[str, Any]], provider: str) -> list[dict[str, Any]]:
    """System and developer messages as the top-level system blocks, but those said among the turns."""
    blocks: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        if message.get("role") in ("system", "developer") and not message.get("between_turns"):
            blocks += [b for b in _blocks(message, provider, f"messages[{i}]") if b.get("type") == "text"]
    return blocks


def _thinking(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The thinking blocks (signed, or redacted) of an earlier answer, which Anthropic wants back as they were.

    They come first in the assistant turn; the Messages ingress (and LiteLLM-style clients) carry
    them as the message's `thinking_blocks`.
    """
    blocks = message.get("thinking_blocks")
    if not isinstance(blocks, list):
        return []
    return [dict(b) for b in blocks if isinstance(b, dict) and b.get("type") in ("thinking", "redacted_thinking")]


def _tool_use(call: dict[str, Any], provider: str, where: str) -> dict[str, Any]:
    function = call.get("function") or {}
    block = {
        "type": "tool_use",
        "id": _tool_id(call.get("id")),
        "name": str(function.get("name") or ""),
        "input": _tool_input(function.get("arguments"), provider, where),
    }
    if isinstance(call.get("cache_control"), dict):  # carried by the Messages ingress
        block["cache_control"] = call["cache_control"]
    return block


def _messages(messages: list[dict[str, Any]], provider: str) -> list[dict[str, Any]]:
    """User/assistant/tool messages as strictly alternating turns with tool results up front."""
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        role = message.get("role")
        where = f"messages[{i}]"
        if role == "user":
            blocks = _blocks(message, provider, where)
        elif role == "assistant":
            blocks = _thinking(message) + _blocks(message, provider, where)
            for j, call in enumerate(message.get("tool_calls") or ()):
                blocks.append(_tool_use(call, provider, f"{where}.tool_calls[{j}]"))
        elif role == "tool":
            role = "user"  # Anthropic carries tool results in the user turn that follows
            blocks = [_tool_result(message, provider, where)]
        elif message.get("between_turns"):  # a system turn where it was said (its beta goes with it)
            role = "system"
            blocks = [b for b in _blocks(message, provider, where) if b.get("type") == "text"]
        else:
            continue  # system/developer went to `system`
        toolkit.add_turn(turns, role, blocks)
    # "messages following tool_use blocks must begin with tool_result blocks"
    toolkit.results_first(turns, lambda block: block.get("type") == "tool_result")
    return turns


def _tools(tools: list[Any]) -> list[dict[str, Any]]:
    result = []
    for tool in tools:
        if not isinstance(tool, dict):
            continue
        function = tool.get("function")
        if tool.get("type") != "function" or not isinstance(function, dict):
            continue  # validation lets only function tools through: a server tool is never forwarded
        converted: dict[str, Any] = {
            "name": function.get("name"),
            "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
        }
        if function.get("description"):
            converted["description"] = function["description"]
        cache_control = tool.get("cache_control") or function.get("cache_control")
        if cache_control:
            converted["cache_control"] = cache_control
        result.append(converted)
    return result


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    mapped: dict[str, Any] | None = None
    if choice == "auto":
        mapped = {"type": "auto"}
    elif choice == "required":
        mapped = {"type": "any"}
    elif choice == "none":
        return {"type": "none"}
    elif isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if name:
            mapped = {"type": "tool", "name": name}
        elif choice.get("type") in ("auto", "any", "tool", "none"):
            mapped = dict(choice)  # already Anthropic-shaped
    if parallel is False:
        mapped = mapped or {"type": "auto"}
        mapped["disable_parallel_tool_use"] = True
    return mapped


def _user_id(user: str) -> str:
    if _EMAIL.match(user) or _PHONE.match(user):
        return hashlib.sha256(user.encode()).hexdigest()
    return user


def _fit_thinking(request: dict[str, Any]) -> None:
    """Keep a thinking budget below max_tokens, as Anthropic requires: the gateway may have lowered
    max_tokens to the model's maximum or to what the key can afford. Below the 1024-token minimum
    budget, thinking is left out."""
    thinking = request.get("thinking")
    budget = thinking.get("budget_tokens") if isinstance(thinking, dict) else None
    if not isinstance(budget, int) or budget < request["max_tokens"]:
        return
    if request["max_tokens"] > MIN_THINKING_BUDGET:
        request["thinking"] = {**thinking, "budget_tokens": request["max_tokens"] - 1}
    else:
        del request["thinking"]


def to_anthropic(body: dict[str, Any], provider: str = "anthropic") -> dict[str, Any]:
    """The Messages API request for an OpenAI chat completion request."""
    messages = [m for m in body.get("messages") or () if isinstance(m, dict)]
    limit = body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_TOKENS
    request: dict[str, Any] = {"model": body.get("model"), "max_tokens": limit}
    system = _system(messages, provider)
    if system:
        request["system"] = system
    request["messages"] = _messages(messages, provider)

    if body.get("temperature") is not None:
        request["temperature"] = min(max(float(body["temperature"]), 0.0), 1.0)
    elif body.get("top_p") is not None:
        request["top_p"] = body["top_p"]
    stops = toolkit.stop_sequences(body.get("stop"), blank=False)  # Anthropic refuses whitespace-only ones
    if stops:
        request["stop_sequences"] = stops
    if isinstance(body.get("user"), str) and body["user"]:
        request["metadata"] = {"user_id": _user_id(body["user"])}
    for native in toolkit.ANTHROPIC_FIELDS:
        if body.get(native) is not None and native != "anthropic_beta":  # a header (providers/anthropic.py)
            request[native] = body[native]
    _fit_thinking(request)

    tools = _tools(body.get("tools") or [])
    choice = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
    if not tools and any(
        b.get("type") in ("tool_use", "tool_result") for t in request["messages"] for b in t["content"]
    ):
        # "Requests which include tool_use or tool_result blocks must define tools": describe the
        # tools the history used, and forbid calling them, since the caller offered none.
        names = {b["name"] for t in request["messages"] for b in t["content"] if b.get("type") == "tool_use"}
        tools = [{"name": n, "input_schema": {"type": "object", "properties": {}}} for n in sorted(names) if n] or [
            {"name": "no_tools", "input_schema": {"type": "object", "properties": {}}}
        ]
        choice = {"type": "none"}
    if tools:
        request["tools"] = tools
        if choice:
            request["tool_choice"] = choice
    return request
