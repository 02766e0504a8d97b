"""OpenAI Responses: a request becomes the canonical chat request; the answer, whole or streamed, a Response.

Every catalog model answers, whatever protocol its provider speaks, because the request is
translated into the one canonical body (OpenAI chat completions) that chat/validation.py checks
and chat/service.py admits, routes, settles and records: a Responses call is billed and counted
exactly as the same chat completion would be. Its own shape is checked first, so a 400 names the
Responses field (`input[2].call_id`, `text.format.schema`), and the few errors the shared path
raises later are renamed back (`messages[1].content[0]` becomes `input[0].content[0]`).

Stateless on purpose (the README says why): nothing is stored, so `store` is accepted and
answered `false`, and what would need a stored response (`previous_response_id`,
`conversation`, `background`, stored prompts, references to stored items) is a 400. Agents
(Codex CLI, the AI SDK with `store: false`) send the whole `input` every turn anyway.

Answers: a chat.completion becomes a Response (reasoning, message and function_call items), and
the canonical stream the documented typed events (`_Events`); usage keeps the cost the service
settled, in USD.

Responses fields map onto their chat equivalents (`max_output_tokens` to
`max_completion_tokens`, `text.format` to `response_format`, `reasoning.effort` to
`reasoning_effort`, function tools, namespaced ones included, to chat's nested shape); those
with the same meaning in both keep their name (FORWARDED, the gateway's `provider` and `models`
among them). Every other field is read and echoed (`include`, `truncation`, ...) or ignored,
never sent: clients add fields of their own (Codex CLI's `client_metadata`) that a chat
upstream would refuse.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.chat import shape
from gateway.chat.validation import _get, _missing, _show, _type, _wrong_type
from gateway.errors import GatewayError, invalid_request
from gateway.stats.generations import PREFIX as GENERATION_PREFIX

ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}
TEXT_PARTS = frozenset({"input_text", "output_text", "text"})
TOOL_CHOICES = frozenset({"none", "auto", "required"})
# Fields that mean the same in a chat request, copied as they are; the rest are translated or not sent.
FORWARDED = frozenset(
    {
        "model",
        "stream",
        "temperature",
        "top_p",
        "parallel_tool_calls",
        "user",
        "safety_identifier",
        "prompt_cache_key",
        "prompt_cache_retention",
        "service_tier",
        "metadata",
        "models",
        "provider",
    }
)
STATEFUL = {
    "previous_response_id": "the gateway stores no responses; send the whole conversation in 'input'",
    "conversation": "the gateway stores no conversations; send the whole conversation in 'input'",
    "prompt": "stored prompt templates live on OpenAI's platform; send 'instructions' and 'input' instead",
}
# Canonical parameter names as a Responses client knows them, for errors raised after translation.
RENAMED = {
    "messages": "input",
    "max_completion_tokens": "max_output_tokens",
    "max_tokens": "max_output_tokens",
    "reasoning_effort": "reasoning.effort",
    "tool_choice.function.name": "tool_choice.name",
}
_MESSAGE_PARAM = re.compile(r"^messages\[(\d+)\](.*)$")
_TOOL_PARAM = re.compile(r"^tools\[(\d+)\](?:\.function)?(.*)$")
UNSUPPORTED_TOOL = (
    "'{where}' is a {kind} tool, which OpenAI runs on its own servers; the gateway serves every model through chat "
    "completions, which takes function tools (alone or in a namespace) only."
)


# --- the request -------------------------------------------------------------------------------


@dataclass(slots=True)
class Translation:
    """The canonical chat body of one Responses request, what its Response repeats, and where each part came from."""

    body: dict[str, Any]
    echo: dict[str, Any]
    created_at: int = field(default_factory=lambda: int(time.time()))
    origins: list[str] = field(default_factory=list)  # per canonical message: the Responses param it came from
    tool_origins: list[str] = field(default_factory=list)  # per canonical tool: where it is in `tools`
    namespaces: dict[str, str] = field(default_factory=dict)  # a namespaced function's name -> its namespace

    def rename(self, error: GatewayError) -> GatewayError:
        """The error with its parameter named as the Responses request spells it (in `param` and the message)."""
        return error.rename(self._param(error.param)) if error.param else error

    def _param(self, param: str) -> str:
        if param in RENAMED:
            return RENAMED[param]
        if param.startswith("response_format"):
            return "text.format" + param[len("response_format") :].replace(".json_schema", "", 1)
        match = _MESSAGE_PARAM.match(param)
        if match:
            index, rest = int(match[1]), match[2]
            origin = self.origins[index] if index < len(self.origins) else "input"
            base, _, content = origin.partition("#")  # "input[3]#output": a function call's output
            if base in ("instructions", "input") or not rest.startswith(".content"):
                return base
            return base + (f".{content}{rest[len('.content') :]}" if content else rest)
        match = _TOOL_PARAM.match(param)
        if match and int(match[1]) < len(self.tool_origins):
            return self.tool_origins[int(match[1])] + match[2]
        return param


def _string(obj: dict[str, Any], key: str, prefix: str = "", required: bool = False) -> str | None:
    return _get(obj, key, str, "a string", prefix, required)


def _one_of(value: str, allowed: tuple[str, ...], param: str) -> None:
    if value not in allowed:
        supported = "', '".join(allowed)
        raise invalid_request(
            f"Invalid value for '{param}': {_show(value)}. Supported values are: '{supported}'.", param
        )


def _refuse_state(body: dict[str, Any]) -> None:
    """What needs a stored response or job: refused, since the gateway keeps none (see the module docstring)."""
    for name, why in STATEFUL.items():
        if body.get(name) is not None:
            raise invalid_request(f"'{name}' is not supported: {why}.", name, "unsupported_parameter")
    if _get(body, "background", bool, "a boolean"):
        raise invalid_request(
            "'background' is not supported: the gateway runs no background jobs; stream the response instead.",
            "background",
            "unsupported_parameter",
        )
    _get(body, "store", bool, "a boolean")


def _part(part: Any, where: str) -> dict[str, Any]:
    """One content part of a message or a function call's output, as chat's content part."""
    if not isinstance(part, dict):
        raise _wrong_type(where, "a content part (an object)", part)
    p = where + "."
    kind = _string(part, "type", p, required=True)
    if kind in TEXT_PARTS:
        return {"type": "text", "text": _string(part, "text", p, required=True)}
    if kind == "refusal":
        return {"type": "refusal", "refusal": _string(part, "refusal", p, required=True)}
    if kind == "input_image":
        url = _string(part, "image_url", p)
        if url is None:
            if _string(part, "file_id", p) is not None:
                raise invalid_request(
                    f"'{p}file_id' names a file stored on OpenAI's platform, which the gateway cannot read; "
                    "send the image as 'image_url' (a URL or a data: URL).",
                    p + "file_id",
                    "unsupported_parameter",
                )
            raise _missing(p + "image_url")
        image = {"url": url}
        detail = _string(part, "detail", p)
        if detail is not None:
            image["detail"] = detail
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        if _string(part, "file_url", p) is not None:
            raise invalid_request(
                f"'{p}file_url' is not supported: send the file's content as 'file_data' (a data: URL).",
                p + "file_url",
                "unsupported_parameter",
            )
        if _string(part, "file_id", p) is not None:
            raise invalid_request(
                f"'{p}file_id' names a file stored on OpenAI's platform, which the gateway cannot read; "
                "send the file's content as 'file_data' (a data: URL).",
                p + "file_id",
                "unsupported_parameter",
            )
        file = {name: _string(part, name, p) for name in ("file_data", "filename")}
        if file["file_data"] is None:
            raise _missing(p + "file_data")
        return {"type": "file", "file": {k: v for k, v in file.items() if v is not None}}
    if kind == "input_audio":
        audio = _get(part, "input_audio", dict, "an object with data and format", p, required=True)
        data = _string(audio, "data", p + "input_audio.", required=True)
        audio_format = _string(audio, "format", p + "input_audio.", required=True)
        return {"type": "input_audio", "input_audio": {"data": data, "format": audio_format}}
    raise invalid_request(
        f"Invalid value for '{p}type': {_show(kind)}. Supported content parts are 'input_text', 'input_image', "
        "'input_file', 'input_audio', 'output_text' and 'refusal'.",
        p + "type",
    )


def _content(value: Any, where: str) -> str | list[dict[str, Any]]:
    """A string stays one; a lone text part becomes its string (what every provider takes), other lists stay parts."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise _wrong_type(where, "a string or an array of content parts", value)
    parts = [_part(part, f"{where}[{j}]") for j, part in enumerate(value)]
    if len(parts) == 1 and parts[0]["type"] == "text":
        return str(parts[0]["text"])
    return parts or ""


class _Input:
    """The canonical messages built from `instructions` and `input`, with the param each came from.

    Chat completions takes media only from users, so a function output's images and files (Codex
    CLI's view_image) follow the tool messages of that turn in a user message of their own.
    """

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.origins: list[str] = []
        self.media: list[dict[str, Any]] = []  # of the function outputs since the last other message
        self.media_origin = ""

    def add(self, message: dict[str, Any], origin: str) -> None:
        if message["role"] != "tool":
            self.flush()
        self.messages.append(message)
        self.origins.append(origin)

    def flush(self) -> None:
        if self.media:
            media, self.media = self.media, []
            self.add({"role": "user", "content": media}, self.media_origin)

    def output(self, item: dict[str, Any], where: str) -> None:
        """A function call's output: a tool message with its text, its media after the turn's tool messages."""
        p = where + "."
        call_id = _string(item, "call_id", p, required=True)
        output = item.get("output")
        if output is None:
            raise _missing(p + "output")
        content = _content(output, p + "output")
        if isinstance(content, list) and any(part["type"] != "text" for part in content):
            self.media += [part for part in content if part["type"] != "text"]
            self.media_origin = where + "#output"
            texts = [str(part["text"]) for part in content if part["type"] == "text"]
            content = "\n".join(texts) or "(see the attachment that follows)"
        self.add({"role": "tool", "tool_call_id": call_id, "content": content}, where + "#output")

    def item(self, item: Any, where: str) -> None:
        if not isinstance(item, dict):
            raise _wrong_type(where, "an input item (an object)", item)
        p = where + "."
        kind = _string(item, "type", p)
        if kind is None:
            if "role" not in item:
                raise _missing(p + "type")
            kind = "message"
        if kind == "message":
            self.message(item, where)
        elif kind == "function_call":
            self.call(item, where)
        elif kind == "function_call_output":
            self.output(item, where)
        elif kind == "reasoning":
            return  # the model's own earlier reasoning: providers take no such input (and OpenAI's is encrypted)
        elif kind == "item_reference":
            if str(item.get("id")).startswith("rs_"):
                return  # a reasoning item, ignored as the item itself would be (the AI SDK sends these when storing)
            raise invalid_request(
                f"'{where}' refers to a stored item, and the gateway stores none; send the item itself "
                "(the AI SDK does with providerOptions.openai.store = false).",
                where,
                "unsupported_parameter",
            )
        else:
            raise invalid_request(
                f"Invalid value for '{p}type': {_show(kind)}. The gateway takes input items of type 'message', "
                "'function_call', 'function_call_output' and 'reasoning' (ignored).",
                p + "type",
            )

    def message(self, item: dict[str, Any], where: str) -> None:
        p = where + "."
        role = item.get("role")
        if role is None:
            raise _missing(p + "role")
        if not isinstance(role, str) or role not in ROLES:
            raise invalid_request(
                f"Invalid value for '{p}role': {_show(role)}. Supported values are: 'user', 'assistant', 'system' "
                "and 'developer'.",
                p + "role",
            )
        content = item.get("content")
        if content is None:
            raise _missing(p + "content")
        # developer becomes system: OpenAI treats them alike, and many providers know only system.
        self.add({"role": ROLES[role], "content": _content(content, p + "content")}, where)

    def call(self, item: dict[str, Any], where: str) -> None:
        """A function call of an earlier assistant turn: a tool call on that turn's assistant message."""
        p = where + "."
        call = {
            "id": _string(item, "call_id", p, required=True),
            "type": "function",
            "function": {
                "name": _string(item, "name", p, required=True),
                "arguments": _string(item, "arguments", p, required=True),
            },
        }
        last = self.messages[-1] if self.messages else None
        if last is not None and last["role"] == "assistant":  # the same turn: its text, or calls made in parallel
            last.setdefault("tool_calls", []).append(call)
        else:
            self.add({"role": "assistant", "content": None, "tool_calls": [call]}, where)


# OpenAI's hosted web search runs on OpenAI's servers and is billed per call, so no provider here
# can run it; clients that offer it by default (Codex CLI) still work without it. Forcing it with
# tool_choice stays a 400, and the other hosted tools too: a model cannot do their work itself.
DROPPED_TOOLS = frozenset({"web_search", "web_search_preview", "web_search_preview_2025_03_11"})


def _function(tool: dict[str, Any], where: str) -> dict[str, Any]:
    """A Responses function tool in chat's nested shape."""
    p = where + "."
    function: dict[str, Any] = {"name": _string(tool, "name", p, required=True)}
    description = _string(tool, "description", p)
    parameters = _get(tool, "parameters", dict, "an object (a JSON Schema)", p)
    strict = _get(tool, "strict", bool, "a boolean", p)
    for name, value in (("description", description), ("parameters", parameters), ("strict", strict)):
        if value is not None:
            function[name] = value
    return {"type": "function", "function": function}


def _tool_kind(tool: Any, where: str) -> str:
    if not isinstance(tool, dict):
        raise _wrong_type(where, "a tool object", tool)
    return str(_string(tool, "type", where + ".", required=True))


def _unsupported_tool(kind: str, where: str) -> GatewayError:
    return invalid_request(UNSUPPORTED_TOOL.format(where=where, kind=_show(kind)), where + ".type", "unsupported_tool")


def _tools(body: dict[str, Any], chat: dict[str, Any], translation: Translation) -> None:
    """Function tools into chat's nested shape, a namespace's flattened (its functions keep their names, and
    their calls are answered with the namespace), and `tool_choice` (allowed_tools narrows the list itself)."""
    named: dict[str, tuple[str, dict[str, Any]]] = {}

    def add(tool: dict[str, Any], where: str, namespace: str | None = None) -> None:
        function = _function(tool, where)
        name = function["function"]["name"]
        if name in named:
            raise invalid_request(f"'{where}.name': two tools are named {_show(name)}.", where + ".name")
        named[name] = (where, function)
        if namespace is not None:
            translation.namespaces[name] = namespace

    for i, tool in enumerate(_get(body, "tools", list, "an array") or ()):
        where = f"tools[{i}]"
        kind = _tool_kind(tool, where)
        if kind == "function":
            add(tool, where)
        elif kind in DROPPED_TOOLS:
            continue  # Codex offers it on every turn: without it the model answers from what it knows
        elif kind == "namespace":
            namespace = str(_string(tool, "name", where + ".", required=True))
            for j, inner in enumerate(_get(tool, "tools", list, "an array", where + ".", required=True)):
                inner_where = f"{where}.tools[{j}]"
                inner_kind = _tool_kind(inner, inner_where)
                if inner_kind != "function":
                    raise _unsupported_tool(inner_kind, inner_where)
                add(inner, inner_where, namespace)
        else:
            raise _unsupported_tool(kind, where)
    choice = body.get("tool_choice")
    if isinstance(choice, str):
        _one_of(choice, tuple(sorted(TOOL_CHOICES)), "tool_choice")
        chat["tool_choice"] = choice
    elif isinstance(choice, dict):
        kind = _string(choice, "type", "tool_choice.", required=True)
        if kind == "function":
            chat["tool_choice"] = {
                "type": "function",
                "function": {"name": _string(choice, "name", "tool_choice.", True)},
            }
        elif kind == "allowed_tools":
            mode = _string(choice, "mode", "tool_choice.", required=True)
            _one_of(str(mode), ("auto", "required"), "tool_choice.mode")
            allowed = set()
            for j, tool in enumerate(_get(choice, "tools", list, "an array", "tool_choice.", required=True)):
                where = f"tool_choice.tools[{j}]"
                if not isinstance(tool, dict) or tool.get("type") != "function":
                    raise invalid_request(
                        f"'{where}' must be a function tool: {{'type': 'function', 'name': ...}}.", where
                    )
                allowed.add(_string(tool, "name", where + ".", required=True))
            named = {name: entry for name, entry in named.items() if name in allowed}
            chat["tool_choice"] = mode
        else:
            raise invalid_request(
                f"Invalid value for 'tool_choice.type': {_show(kind)}. The gateway serves function tools only: "
                "use 'none', 'auto', 'required', {'type': 'function', 'name': ...} or 'allowed_tools'.",
                "tool_choice.type",
                "unsupported_tool",
            )
    elif choice is not None:
        raise _wrong_type("tool_choice", "a string or an object", choice)
    if named:
        chat["tools"] = [tool for _, tool in named.values()]
        translation.tool_origins = [where for where, _ in named.values()]
    else:  # Responses takes these without tools; chat completions refuses them
        chat.pop("tool_choice", None)
        chat.pop("parallel_tool_calls", None)


def _text(body: dict[str, Any], chat: dict[str, Any]) -> dict[str, Any]:
    """`text.format` as chat's `response_format`, `text.verbosity` passed on; the `text` a Response repeats."""
    text = _get(body, "text", dict, "an object") or {}
    fmt = _get(text, "format", dict, "an object", "text.")
    verbosity = _string(text, "verbosity", "text.")
    if verbosity is not None:
        chat["verbosity"] = verbosity
    if fmt is None:
        fmt = {"type": "text"}
    kind = _string(fmt, "type", "text.format.", required=True)
    if kind == "json_schema":
        p = "text.format."
        schema = {
            "name": _string(fmt, "name", p, required=True),
            "schema": _get(fmt, "schema", dict, "an object (a JSON Schema)", p, required=True),
        }
        description = _string(fmt, "description", p)
        strict = _get(fmt, "strict", bool, "a boolean", p)
        if description is not None:
            schema["description"] = description
        if strict is not None:
            schema["strict"] = strict
        chat["response_format"] = {"type": "json_schema", "json_schema": schema}
    elif kind == "json_object":
        chat["response_format"] = {"type": "json_object"}
    else:
        _one_of(str(kind), ("text", "json_object", "json_schema"), "text.format.type")
    return {"format": fmt, **({"verbosity": verbosity} if verbosity is not None else {})}


def translate(body: Any) -> Translation:
    """The canonical chat body of a Responses request, or a 400 naming the first malformed Responses field."""
    if not isinstance(body, dict):
        raise invalid_request(f"The request body must be a JSON object, got {_type(body)}.")
    _refuse_state(body)
    chat = {k: v for k, v in body.items() if k in FORWARDED}
    translation = Translation(body=chat, echo={})
    built = _Input()
    instructions = _string(body, "instructions")
    if instructions:
        built.add({"role": "system", "content": instructions}, "instructions")
    given = body.get("input")
    if given is None:
        raise _missing("input")
    if isinstance(given, str):
        built.add({"role": "user", "content": given}, "input")
    elif isinstance(given, list):
        for i, item in enumerate(given):
            built.item(item, f"input[{i}]")
    else:
        raise _wrong_type("input", "a string or an array of input items", given)
    built.flush()
    if not built.messages:
        raise invalid_request("'input' must contain at least one message.", "input", "empty_array")
    chat["messages"] = built.messages
    translation.origins = built.origins

    limit = body.get("max_output_tokens")
    if limit is not None:
        chat["max_completion_tokens"] = limit  # validate() checks it; its errors are renamed back
    reasoning = _get(body, "reasoning", dict, "an object")
    if reasoning is not None:
        effort = _string(reasoning, "effort", "reasoning.")
        _string(reasoning, "summary", "reasoning.")
        if effort is not None:
            chat["reasoning_effort"] = effort
    _tools(body, chat, translation)
    text = _text(body, chat)
    for i, value in enumerate(_get(body, "include", list, "an array of strings") or ()):
        if not isinstance(value, str):
            raise _wrong_type(f"include[{i}]", "a string", value)
    truncation = _string(body, "truncation")
    if truncation is not None:
        _one_of(truncation, ("auto", "disabled"), "truncation")
    for name in ("top_logprobs", "max_tool_calls"):
        value = body.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise invalid_request(f"Invalid value for '{name}': expected a non-negative integer.", name)
    translation.echo = _echo(body, instructions, text, reasoning, truncation)
    return translation


def _echo(
    body: dict[str, Any], instructions: str | None, text: dict[str, Any], reasoning: Any, truncation: str | None
) -> dict[str, Any]:
    """The request fields a Response object repeats (as the SDK's `Response` type has them)."""
    parallel = body.get("parallel_tool_calls")
    return {
        "instructions": instructions,
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": body.get("max_tool_calls"),
        "metadata": body.get("metadata") or {},
        "parallel_tool_calls": parallel if isinstance(parallel, bool) else True,
        "previous_response_id": None,
        "prompt_cache_key": body.get("prompt_cache_key"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")} if reasoning else None,
        "safety_identifier": body.get("safety_identifier"),
        "service_tier": body.get("service_tier"),
        "store": False,  # nothing is kept, whatever was asked
        "temperature": body.get("temperature"),
        "text": text,
        "tool_choice": body.get("tool_choice") or "auto",
        "tools": body.get("tools") or [],
        "top_logprobs": body.get("top_logprobs"),
        "top_p": body.get("top_p"),
        "truncation": truncation or "disabled",
        "user": body.get("user"),
    }


# --- the answer --------------------------------------------------------------------------------


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
        function = call["function"] if isinstance(call.get("function"), dict) else {}
        call_id = call["id"] if isinstance(call.get("id"), str) else f"call_{uuid.uuid4().hex}"
        item = _call_item(f"fc_{suffix}_{len(output)}", call_id, "completed")
        _name(item, str(function.get("name") or ""), translation)
        item["arguments"] = str(function.get("arguments") or "")
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


def _call_item(item_id: str, call_id: str, status: str) -> dict[str, Any]:
    return {"id": item_id, "type": "function_call", "call_id": call_id, "name": "", "arguments": "", "status": status}


def _name(item: dict[str, Any], name: str, translation: Translation) -> None:
    """The called function's name, and the namespace it was declared in (the client looks it up there)."""
    item["name"] = name
    if name in translation.namespaces:
        item["namespace"] = translation.namespaces[name]


# --- the stream --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Kind:
    """How one kind of text part streams (a message's content part, a reasoning item's summary part): its events,
    the events' name for its position, and the field holding its text."""

    index: str
    added: str
    delta: str
    done: str
    part_done: str
    field: str


KINDS = {
    "output_text": _Kind(
        "content_index",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "text",
    ),
    "refusal": _Kind(
        "content_index",
        "response.content_part.added",
        "response.refusal.delta",
        "response.refusal.done",
        "response.content_part.done",
        "refusal",
    ),
    "summary_text": _Kind(
        "summary_index",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "text",
    ),
}
LOGPROBS = {"output_text": {"logprobs": []}}  # text events carry logprobs, never requested here


class _Events:
    """The typed events of one streamed Response, from the canonical chunks, numbered in order.

    Output items open as their first delta arrives: a reasoning item, a message (its text and
    refusal parts), and a function call per chat tool call. A message or reasoning item closes when
    another item starts; function calls close at the end, since providers may interleave them.
    """

    def __init__(self, translation: Translation) -> None:
        self.translation = translation
        self.sequence = 0
        self.suffix = ""
        self.model = ""
        self.output: list[dict[str, Any]] = []
        self.index: dict[str, int] = {}  # item id -> output index
        self.open: dict[str, Any] | None = None  # the message or reasoning item receiving deltas
        self.calls: dict[int, dict[str, Any]] = {}  # chat tool call index -> function_call item
        self.closed: set[str] = set()
        self.finish_reason: str | None = None

    def event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"

    def response(self, status: str, **fields: Any) -> dict[str, Any]:
        output = self.output if status != "in_progress" else []
        return _response(self.translation, self.suffix, self.model, status, output, fields.pop("usage", None), **fields)

    def start(self, chunk: dict[str, Any] | None) -> Iterator[bytes]:
        self.suffix = _suffix(chunk.get("id") if chunk else None)
        self.model = str(chunk.get("model") if chunk else self.translation.body.get("model"))
        yield self.event("response.created", response=self.response("in_progress"))
        yield self.event("response.in_progress", response=self.response("in_progress"))

    # items

    def _add(self, item: dict[str, Any]) -> Iterator[bytes]:
        self.index[item["id"]] = len(self.output)
        self.output.append(item)
        snapshot = {**item, **{name: [] for name in ("content", "summary") if name in item}}
        yield self.event("response.output_item.added", output_index=self.index[item["id"]], item=snapshot)

    def _where(self, item: dict[str, Any]) -> dict[str, Any]:
        return {"item_id": item["id"], "output_index": self.index[item["id"]]}

    @staticmethod
    def _parts(item: dict[str, Any]) -> list[dict[str, Any]]:
        return item["summary"] if item["type"] == "reasoning" else item["content"]

    def _close_part(self, item: dict[str, Any]) -> Iterator[bytes]:
        parts = self._parts(item)
        part = parts[-1]
        kind = KINDS[part["type"]]
        where = {**self._where(item), kind.index: len(parts) - 1}
        yield self.event(kind.done, **where, **{kind.field: part[kind.field]}, **LOGPROBS.get(part["type"], {}))
        yield self.event(kind.part_done, **where, part=part)

    def _close(self, item: dict[str, Any], status: str) -> Iterator[bytes]:
        if item["id"] in self.closed:
            return
        self.closed.add(item["id"])
        if item is self.open:
            self.open = None
            if self._parts(item):
                yield from self._close_part(item)
        if item["type"] == "function_call":
            yield self.event("response.function_call_arguments.done", **self._where(item), arguments=item["arguments"])
        item["status"] = status
        yield self.event("response.output_item.done", output_index=self.index[item["id"]], item=item)

    def _text(self, kind: str, text: str) -> Iterator[bytes]:
        """A delta of message text, refusal or reasoning: into the open item's last part, or a new one."""
        item_type = "reasoning" if kind == "summary_text" else "message"
        item = self.open
        if item is None or item["type"] != item_type:
            if item is not None:
                yield from self._close(item, "completed")
            item_id = f"{'rs' if item_type == 'reasoning' else 'msg'}_{self.suffix}_{len(self.output)}"
            if item_type == "reasoning":
                item = _reasoning_item(item_id, None, "in_progress")
            else:
                item = _message_item(item_id, "in_progress")
            yield from self._add(item)
            self.open = item
        spec, parts = KINDS[kind], self._parts(item)
        if not parts or parts[-1]["type"] != kind:
            if parts:
                yield from self._close_part(item)
            part = _output_text("") if kind == "output_text" else {"type": kind, spec.field: ""}
            parts.append(part)
            yield self.event(spec.added, **self._where(item), **{spec.index: len(parts) - 1}, part=part)
        parts[-1][spec.field] += text
        where = {**self._where(item), spec.index: len(parts) - 1}
        yield self.event(spec.delta, **where, delta=text, **LOGPROBS.get(kind, {}))

    def _call(self, call: Any) -> Iterator[bytes]:
        if not isinstance(call, dict):
            return
        function = call.get("function") if isinstance(call.get("function"), dict) else {}
        index = call["index"] if isinstance(call.get("index"), int) else 0
        item = self.calls.get(index)
        if item is None:
            if self.open is not None:
                yield from self._close(self.open, "completed")
            call_id = call.get("id") if isinstance(call.get("id"), str) else f"call_{uuid.uuid4().hex}"
            item = _call_item(f"fc_{self.suffix}_{len(self.output)}", call_id, "in_progress")
            _name(item, function["name"] if isinstance(function.get("name"), str) else "", self.translation)
            self.calls[index] = item
            yield from self._add(item)
        elif not item["name"] and isinstance(function.get("name"), str):
            _name(item, function["name"], self.translation)
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            item["arguments"] += arguments
            yield self.event("response.function_call_arguments.delta", **self._where(item), delta=arguments)

    def chunk(self, chunk: dict[str, Any]) -> Iterator[bytes]:
        choice = next((c for c in chunk["choices"] if c.get("index", 0) == 0), None)
        if choice is None:
            return
        delta = choice.get("delta") or {}
        reasoning = shape.reasoning(delta)
        if reasoning:
            yield from self._text("summary_text", reasoning)
        for kind, name in (("output_text", "content"), ("refusal", "refusal")):
            value = delta.get(name)
            if isinstance(value, str) and value:
                yield from self._text(kind, value)
        calls = delta.get("tool_calls")
        for call in calls if isinstance(calls, list) else ():
            yield from self._call(call)
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]

    def finish(self, chat_usage: Any) -> Iterator[bytes]:
        status, incomplete = _status(self.finish_reason)
        if not self.output:  # nothing was said: an empty message, as a whole answer has
            item = _message_item(f"msg_{self.suffix}_0", "in_progress")
            yield from self._add(item)
            self.open = item
            item["content"].append(_output_text(""))
            yield self.event("response.content_part.added", **self._where(item), content_index=0, part=_output_text(""))
        last = self.output[-1]
        for item in [i for i in self.output if i["id"] not in self.closed]:
            yield from self._close(item, "incomplete" if incomplete and item is last else "completed")
        kind = "response.incomplete" if incomplete else "response.completed"
        yield self.event(kind, response=self.response(status, usage=usage(chat_usage), incomplete=incomplete))

    def fail(self, error: Any) -> Iterator[bytes]:
        """`response.failed`, then an `error` event in both shapes clients read: the documented flat
        fields, and the nested `error` object OpenAI really sends, which makes the SDKs raise.

        Open items are not closed: an agent runs a function call when its item is done, and a cut
        call must not run.
        """
        error = error if isinstance(error, dict) else {}
        message = str(error.get("message") or "The upstream provider failed mid-stream.")
        code = error.get("code") if isinstance(error.get("code"), str) else "upstream_error"
        for item in self.output:
            if item["id"] not in self.closed:
                item["status"] = "incomplete"
        failure = {"code": "server_error", "message": message}  # the SDK's ResponseError allows only its own codes
        yield self.event("response.failed", response=self.response("failed", error=failure))
        nested = {"type": error.get("type") or "server_error", "code": code, "message": message, "param": None}
        yield self.event("error", code=code, message=message, param=None, error=nested)


async def sse(chunks: AsyncGenerator[dict[str, Any]], translation: Translation) -> AsyncIterator[bytes]:
    """The canonical stream as Responses events; closing it (a client that hung up) settles the request now."""
    events = _Events(translation)
    started = False
    async with aclosing(chunks):
        async for chunk in chunks:
            if not started:
                started = True
                for event in events.start(chunk if "error" not in chunk else None):
                    yield event
            if "error" in chunk:
                for event in events.fail(chunk["error"]):
                    yield event
                return
            if chunk.get("choices"):
                for event in events.chunk(chunk):
                    yield event
            elif "usage" in chunk:
                for event in events.finish(chunk["usage"]):
                    yield event
                return
    if not started:
        for event in events.start(None):
            yield event
    for event in events.finish(None):
        yield event
