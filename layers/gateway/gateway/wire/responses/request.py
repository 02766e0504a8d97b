"""OpenAI Responses: a request becomes the canonical chat request; the answer, whole or streamed, a Response.

Every catalog model answers, whatever protocol its provider speaks, because the request is
translated into the one canonical body (OpenAI chat completions) that wire/chat/request.py checks
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
from dataclasses import dataclass, field
from typing import Any

from gateway import fields
from gateway.errors import invalid_request
from gateway.fields import missing, one_of, show, string, type_name, wrong_type
from gateway.wire.responses.tools import translate_tools

ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}
TEXT_PARTS = frozenset({"input_text", "output_text", "text"})
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
_TOOL_PARAM = re.compile(r"^tools\[(\d+)\](?:\.function|\.custom)?(.*)$")


# --- the request -------------------------------------------------------------------------------


@dataclass(slots=True)
class Translation:
    """The canonical chat body of one Responses request, what its Response repeats, and where each part came from."""

    body: dict[str, Any]
    echo: dict[str, Any]
    created_at: int = field(default_factory=lambda: int(time.time()))
    origins: list[str] = field(default_factory=list)  # per canonical message: the Responses param it came from
    tool_origins: list[str] = field(default_factory=list)  # per canonical tool: where it is in `tools`
    namespaces: dict[str, str] = field(default_factory=dict)  # a namespaced tool's name -> its namespace
    customs: set[str] = field(default_factory=set)  # the custom (freeform) tools' names: their calls' item type
    additional: list[tuple[str, Any]] = field(default_factory=list)  # tools an input item added, and where

    def locate(self, param: str) -> str:
        """A canonical parameter as the Responses request spells it (for GatewayError.located)."""
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


def _refuse_state(body: dict[str, Any]) -> None:
    """What needs a stored response or job: refused, since the gateway keeps none (see the module docstring)."""
    for name, why in STATEFUL.items():
        if body.get(name) is not None:
            raise invalid_request(f"'{name}' is not supported: {why}.", name, "unsupported_parameter")
    if fields.field(body, "background", bool, "a boolean"):
        raise invalid_request(
            "'background' is not supported: the gateway runs no background jobs; stream the response instead.",
            "background",
            "unsupported_parameter",
        )
    fields.field(body, "store", bool, "a boolean")


def _no_stored_file(part: dict[str, Any], p: str, instead: str) -> None:
    """A 400 for a part that names a file stored on OpenAI's platform, which no provider here can read."""
    if string(part, "file_id", p) is not None:
        raise invalid_request(
            f"'{p}file_id' names a file stored on OpenAI's platform, which the gateway cannot read; send {instead}.",
            p + "file_id",
            "unsupported_parameter",
        )


def _part(part: Any, where: str) -> dict[str, Any]:
    """One content part of a message or a function call's output, as chat's content part."""
    if not isinstance(part, dict):
        raise wrong_type(where, "a content part (an object)", part)
    p = where + "."
    kind = string(part, "type", p, required=True)
    if kind in TEXT_PARTS:
        return {"type": "text", "text": string(part, "text", p, required=True)}
    if kind == "refusal":
        return {"type": "refusal", "refusal": string(part, "refusal", p, required=True)}
    if kind == "input_image":
        url = string(part, "image_url", p)
        if url is None:
            _no_stored_file(part, p, "the image as 'image_url' (a URL or a data: URL)")
            raise missing(p + "image_url")
        image = {"url": url}
        detail = string(part, "detail", p)
        if detail is not None:
            image["detail"] = detail
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        if string(part, "file_url", p) is not None:
            raise invalid_request(
                f"'{p}file_url' is not supported: send the file's content as 'file_data' (a data: URL).",
                p + "file_url",
                "unsupported_parameter",
            )
        _no_stored_file(part, p, "the file's content as 'file_data' (a data: URL)")
        file = {name: string(part, name, p) for name in ("file_data", "filename")}
        if file["file_data"] is None:
            raise missing(p + "file_data")
        return {"type": "file", "file": {k: v for k, v in file.items() if v is not None}}
    if kind == "input_audio":
        audio = fields.field(part, "input_audio", dict, "an object with data and format", p, required=True)
        data = string(audio, "data", p + "input_audio.", required=True)
        audio_format = string(audio, "format", p + "input_audio.", required=True)
        return {"type": "input_audio", "input_audio": {"data": data, "format": audio_format}}
    raise invalid_request(
        f"Invalid value for '{p}type': {show(kind)}. Supported content parts are 'input_text', 'input_image', "
        "'input_file', 'input_audio', 'output_text' and 'refusal'.",
        p + "type",
    )


def _content(value: Any, where: str) -> str | list[dict[str, Any]]:
    """A string stays one; a lone text part becomes its string (what every provider takes), other lists stay parts."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise wrong_type(where, "a string or an array of content parts", value)
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
        self.additional: list[tuple[str, Any]] = []  # tools input items added, and where

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
        """A function or custom tool call's output: a tool message with its text, its media after the turn's
        tool messages."""
        p = where + "."
        call_id = string(item, "call_id", p, required=True)
        output = item.get("output")
        if output is None:
            raise missing(p + "output")
        content = _content(output, p + "output")
        if isinstance(content, list) and any(part["type"] != "text" for part in content):
            self.media += [part for part in content if part["type"] != "text"]
            self.media_origin = where + "#output"
            texts = [str(part["text"]) for part in content if part["type"] == "text"]
            content = "\n".join(texts) or "(see the attachment that follows)"
        self.add({"role": "tool", "tool_call_id": call_id, "content": content}, where + "#output")

    def item(self, item: Any, where: str) -> None:
        if not isinstance(item, dict):
            raise wrong_type(where, "an input item (an object)", item)
        p = where + "."
        kind = string(item, "type", p)
        if kind is None:
            if "role" not in item:
                raise missing(p + "type")
            kind = "message"
        if kind == "message":
            self.message(item, where)
        elif kind == "function_call":
            self.call(item, where)
        elif kind in ("function_call_output", "custom_tool_call_output"):
            self.output(item, where)
        elif kind == "custom_tool_call":
            self.call(item, where, custom=True)
        elif kind == "additional_tools":  # tools the client adds in the input (Codex's code mode)
            tools = fields.field(item, "tools", list, "an array", p, required=True)
            self.additional += [(f"{where}.tools[{j}]", tool) for j, tool in enumerate(tools)]
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
                f"Invalid value for '{p}type': {show(kind)}. The gateway takes input items of type 'message', "
                "'function_call', 'function_call_output', 'custom_tool_call', 'custom_tool_call_output', "
                "'additional_tools' and 'reasoning' (ignored).",
                p + "type",
            )

    def message(self, item: dict[str, Any], where: str) -> None:
        p = where + "."
        role = item.get("role")
        if role is None:
            raise missing(p + "role")
        if not isinstance(role, str) or role not in ROLES:
            raise invalid_request(
                f"Invalid value for '{p}role': {show(role)}. Supported values are: 'user', 'assistant', 'system' "
                "and 'developer'.",
                p + "role",
            )
        content = item.get("content")
        if content is None:
            raise missing(p + "content")
        # developer becomes system: OpenAI treats them alike, and many providers know only system.
        self.add({"role": ROLES[role], "content": _content(content, p + "content")}, where)

    def call(self, item: dict[str, Any], where: str, custom: bool = False) -> None:
        """A function or custom tool call of an earlier assistant turn: a tool call on that turn's assistant message."""
        p = where + "."
        kind, text = ("custom", "input") if custom else ("function", "arguments")
        call = {
            "id": string(item, "call_id", p, required=True),
            "type": kind,
            kind: {"name": string(item, "name", p, required=True), text: string(item, text, p, required=True)},
        }
        last = self.messages[-1] if self.messages else None
        if last is not None and last["role"] == "assistant":  # the same turn: its text, or calls made in parallel
            last.setdefault("tool_calls", []).append(call)
        else:
            self.add({"role": "assistant", "content": None, "tool_calls": [call]}, where)


def _text(body: dict[str, Any], chat: dict[str, Any]) -> dict[str, Any]:
    """`text.format` as chat's `response_format`, `text.verbosity` passed on; the `text` a Response repeats."""
    text = fields.field(body, "text", dict, "an object") or {}
    fmt = fields.field(text, "format", dict, "an object", "text.")
    verbosity = string(text, "verbosity", "text.")
    if verbosity is not None:
        chat["verbosity"] = verbosity
    if fmt is None:
        fmt = {"type": "text"}
    kind = string(fmt, "type", "text.format.", required=True)
    if kind == "json_schema":
        p = "text.format."
        schema = {
            "name": string(fmt, "name", p, required=True),
            "schema": fields.field(fmt, "schema", dict, "an object (a JSON Schema)", p, required=True),
        }
        description = string(fmt, "description", p)
        strict = fields.field(fmt, "strict", bool, "a boolean", p)
        if description is not None:
            schema["description"] = description
        if strict is not None:
            schema["strict"] = strict
        chat["response_format"] = {"type": "json_schema", "json_schema": schema}
    elif kind == "json_object":
        chat["response_format"] = {"type": "json_object"}
    else:
        one_of(str(kind), ("text", "json_object", "json_schema"), "text.format.type")
    return {"format": fmt, **({"verbosity": verbosity} if verbosity is not None else {})}


def translate(body: Any) -> Translation:
    """The canonical chat body of a Responses request, or a 400 naming the first malformed Responses field."""
    if not isinstance(body, dict):
        raise invalid_request(f"The request body must be a JSON object, got {type_name(body)}.")
    _refuse_state(body)
    chat = {k: v for k, v in body.items() if k in FORWARDED}
    translation = Translation(body=chat, echo={})
    built = _Input()
    instructions = string(body, "instructions")
    if instructions:
        built.add({"role": "system", "content": instructions}, "instructions")
    given = body.get("input")
    if given is None:
        raise missing("input")
    if isinstance(given, str):
        built.add({"role": "user", "content": given}, "input")
    elif isinstance(given, list):
        for i, item in enumerate(given):
            built.item(item, f"input[{i}]")
    else:
        raise wrong_type("input", "a string or an array of input items", given)
    built.flush()
    if not built.messages:
        raise invalid_request("'input' must contain at least one message.", "input", "empty_array")
    chat["messages"] = built.messages
    translation.origins = built.origins
    translation.additional = built.additional

    limit = body.get("max_output_tokens")
    if limit is not None:
        chat["max_completion_tokens"] = limit  # validate() checks it; its errors are renamed back
    reasoning = fields.field(body, "reasoning", dict, "an object")
    if reasoning is not None:
        effort = string(reasoning, "effort", "reasoning.")
        string(reasoning, "summary", "reasoning.")
        if effort is not None:
            chat["reasoning_effort"] = effort
    translate_tools(body, chat, translation)
    text = _text(body, chat)
    for i, value in enumerate(fields.field(body, "include", list, "an array of strings") or ()):
        if not isinstance(value, str):
            raise wrong_type(f"include[{i}]", "a string", value)
    truncation = string(body, "truncation")
    if truncation is not None:
        one_of(truncation, ("auto", "disabled"), "truncation")
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
