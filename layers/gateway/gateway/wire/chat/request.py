"""Validation of a chat completion request, with errors that name the parameter.

Everything downstream (token counts, routing, translation to other protocols, billing) reads
the body without checking it again, so any value it could trip over is refused here as a 400
that names its parameter the way OpenAI does (`messages[2].tool_calls[0].function.arguments`).

The body is checked, never rebuilt: whatever passes goes upstream untouched, unknown fields and
unknown keys inside messages and content parts included. The one change is that an integral
JSON number (`70.0`) in an integer field becomes the integer it is, as JSON Schema reads it.
Checks are isinstance tests only (no models, no copies), so a long prompt costs no more than a
short one. A null optional field counts as absent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.errors import GatewayError, invalid_request
from gateway.fields import field, integer, is_number, missing, number, show, strings, type_name, wrong_type

# Set on a canonical body by an ingress whose own protocol's features it carries (the Messages ingress:
# "anthropic"): providers that speak that protocol get them, any other gets the body without them.
NATIVE = "native_protocol"
ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
MAX_STOP_SEQUENCES = 4
MAX_N = 128
MAX_TOKENS = 2**31 - 1  # far beyond any model, and keeps the worst-case cost arithmetic small
MAX_TOP_LOGPROBS = 20
SEED_RANGE = 2**63  # OpenAI's seed is a signed 64-bit integer
LOGIT_BIAS = 100
TOOL_CHOICES = ("none", "auto", "required")
SORTS = ("price", "throughput", "latency")

# Optional top-level fields that only need the right JSON type (their contents are the upstream's).
BOOLEANS = ("stream", "logprobs", "store", "parallel_tool_calls")
STRINGS = ("user", "service_tier", "reasoning_effort")
OBJECTS = ("prediction", "audio", "web_search_options")


@dataclass(frozen=True, slots=True)
class ChatRequest:
    body: dict[str, Any]
    model: str
    stream: bool
    include_usage: bool
    max_tokens: int | None  # max_completion_tokens or max_tokens, whichever the caller set


# --- messages --------------------------------------------------------------------------------


# The content parts each role may send, as OpenAI defines them: a closed list, so another protocol's
# blocks (Anthropic's `image` with a URL source, `document`, server tool results) never reach a
# provider untranslated and unbounded. A tool's output may hold media, as Anthropic's tool results do.
PARTS = {
    "user": frozenset({"text", "image_url", "input_audio", "file"}),
    "tool": frozenset({"text", "image_url", "file"}),
    "assistant": frozenset({"text", "refusal"}),
    "function": frozenset({"text"}),
    "system": frozenset({"text"}),
    "developer": frozenset({"text"}),
}
# Function tools and custom (freeform) ones, whose input is any text, optionally under a grammar: both run on
# the client. Every other kind (server, hosted, built-in) costs what the request cannot bound.
TOOL_TYPES = ("function", "custom")


def _unsupported(param: str, message: str, code: str = "unsupported_content") -> GatewayError:
    return invalid_request(f"Invalid value for '{param}': {message}", param, code)


def _part(part: Any, where: str, role: str) -> None:
    """One content part: of a type its role may send, carrying its payload."""
    if not isinstance(part, dict):
        raise wrong_type(where, "an object", part)
    p = where + "."
    kind = field(part, "type", str, "a string", p, required=True)
    allowed = PARTS[role]
    if kind not in allowed:
        names = "', '".join(sorted(allowed))
        raise _unsupported(p + "type", f"{show(kind)}. A {role} message's content parts may be '{names}'.")
    if kind == "text":
        field(part, "text", str, "a string", p, required=True)
    elif kind == "image_url":
        image = field(part, "image_url", dict, "an object with a url", p, required=True)
        field(image, "url", str, "a string", p + "image_url.", required=True)
        field(image, "detail", str, "a string", p + "image_url.")
    elif kind == "input_audio":
        audio = field(part, "input_audio", dict, "an object with data and format", p, required=True)
        field(audio, "data", str, "a string", p + "input_audio.", required=True)
        field(audio, "format", str, "a string", p + "input_audio.", required=True)
    elif kind == "file":
        file = field(part, "file", dict, "an object", p, required=True)
        for name in ("file_data", "filename"):
            field(file, name, str, "a string", p + "file.")
        if file.get("file_id") is not None:
            raise _unsupported(
                p + "file.file_id",
                "a file stored on OpenAI's platform, which the gateway cannot read; send its content as "
                "'file_data' (a data: URL).",
                "unsupported_parameter",
            )
        field(file, "file_data", str, "a string", p + "file.", required=True)
    elif kind == "refusal":
        field(part, "refusal", str, "a string", p, required=True)


def _tool_call(call: Any, where: str) -> None:
    if not isinstance(call, dict):
        raise wrong_type(where, "an object", call)
    p = where + "."
    field(call, "id", str, "a string", p, required=True)
    kind = field(call, "type", str, "a string", p, required=True)
    # Token counting and translation read `function` whatever the type says, so its shape always matters.
    function = field(call, "function", dict, "an object", p, required=kind == "function")
    if function is not None:
        field(function, "name", str, "a string", p + "function.", required=kind == "function")
        field(function, "arguments", str, "a string", p + "function.", required=kind == "function")
    custom = field(call, "custom", dict, "an object", p, required=kind == "custom")
    if custom is not None:
        field(custom, "name", str, "a string", p + "custom.", required=True)
        field(custom, "input", str, "a string", p + "custom.", required=True)


def _message(message: Any, where: str) -> None:
    if not isinstance(message, dict):
        raise wrong_type(where, "an object", message)
    p = where + "."
    role = message.get("role")
    if role is None:
        raise missing(p + "role")
    if not isinstance(role, str) or role not in ROLES:
        allowed = "', '".join(sorted(ROLES - {"function"}))
        raise invalid_request(
            f"Invalid value for '{p}role': {show(role)}. Supported values are: '{allowed}'.", p + "role"
        )
    field(message, "name", str, "a string", p)
    calls = field(message, "tool_calls", list, "an array of tool calls", p)
    for j, call in enumerate(calls or ()):
        _tool_call(call, f"{p}tool_calls[{j}]")
    field(message, "tool_call_id", str, "a string", p, required=role == "tool")
    function_call = field(message, "function_call", dict, "an object", p)
    if function_call is not None:
        field(function_call, "name", str, "a string", p + "function_call.")
        field(function_call, "arguments", str, "a string", p + "function_call.")
    field(message, "refusal", str, "a string", p)
    field(message, "audio", dict, "an object", p)
    content = message.get("content")
    if content is None:
        if role in ("assistant", "function"):
            return  # an assistant turn that only called tools (or refused)
        raise missing(p + "content")
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise wrong_type(p + "content", "a string or an array of content parts", content)
    for j, part in enumerate(content):
        _part(part, f"{p}content[{j}]", role)


def _messages(body: dict[str, Any]) -> None:
    messages = body.get("messages")
    if messages is None:
        raise missing("messages")
    if not isinstance(messages, list):
        raise wrong_type("messages", "an array", messages)
    if not messages:
        raise invalid_request("'messages' must contain at least one message.", "messages", "empty_array")
    for i, message in enumerate(messages):
        _message(message, f"messages[{i}]")


# --- tools and output format -----------------------------------------------------------------


def _tools(body: dict[str, Any]) -> None:
    for i, tool in enumerate(field(body, "tools", list, "an array") or ()):
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise wrong_type(where, "a tool object", tool)
        kind = field(tool, "type", str, "a string", where + ".", required=True)
        if kind not in TOOL_TYPES:
            raise _unsupported(
                where + ".type",
                f"{show(kind)}. Only 'function' tools are offered: server and hosted tools run, and bill, "
                "on a provider's side, beyond what this gateway can bound; define a function tool instead.",
                "unsupported_tool",
            )
        if kind == "custom":
            _custom_tool(tool, where)
            continue
        p = where + ".function."
        function = field(tool, "function", dict, "an object", where + ".", required=True)
        field(function, "name", str, "a string", p, required=True)
        field(function, "description", str, "a string", p)
        field(function, "parameters", dict, "an object (a JSON Schema)", p)
        field(function, "strict", bool, "a boolean", p)


def _custom_tool(tool: dict[str, Any], where: str) -> None:
    """A custom tool: a name, a description, and the format of its input (free text, or a grammar)."""
    p = where + ".custom."
    custom = field(tool, "custom", dict, "an object", where + ".", required=True)
    field(custom, "name", str, "a string", p, required=True)
    field(custom, "description", str, "a string", p)
    fmt = field(custom, "format", dict, "an object", p)
    if fmt is not None and field(fmt, "type", str, "a string", p + "format.", required=True) == "grammar":
        grammar = field(fmt, "grammar", dict, "an object", p + "format.", required=True)
        field(grammar, "definition", str, "a string", p + "format.grammar.", required=True)
        field(grammar, "syntax", str, "a string", p + "format.grammar.", required=True)


def _tool_choice(body: dict[str, Any]) -> None:
    choice = body.get("tool_choice")
    if choice is None:
        return
    if isinstance(choice, str):
        if choice not in TOOL_CHOICES:
            raise invalid_request(
                f"Invalid value for 'tool_choice': {show(choice)}. Supported values are: 'none', 'auto', "
                "'required', or an object naming a function.",
                "tool_choice",
            )
        return
    if not isinstance(choice, dict):
        raise wrong_type("tool_choice", "a string or an object", choice)
    kind = field(choice, "type", str, "a string", "tool_choice.", required=True)
    for named in ("function", "custom"):
        value = field(choice, named, dict, "an object", "tool_choice.", required=kind == named)
        if value is not None:
            field(value, "name", str, "a string", f"tool_choice.{named}.", required=kind == named)


def _response_format(body: dict[str, Any]) -> None:
    fmt = field(body, "response_format", dict, "an object")
    if fmt is None:
        return
    kind = field(fmt, "type", str, "a string", "response_format.", required=True)
    schema = field(fmt, "json_schema", dict, "an object", "response_format.", required=kind == "json_schema")
    if schema is not None:
        field(schema, "name", str, "a string", "response_format.json_schema.")
        field(schema, "schema", dict, "an object (a JSON Schema)", "response_format.json_schema.")
        field(schema, "strict", bool, "a boolean", "response_format.json_schema.")


def _stop(body: dict[str, Any]) -> None:
    stop = body.get("stop")
    if stop is None or isinstance(stop, str):
        return
    if not isinstance(stop, list):
        raise invalid_request("Invalid type for 'stop': expected a string or an array of strings.", "stop")
    for i, value in enumerate(stop):
        if not isinstance(value, str):
            raise wrong_type(f"stop[{i}]", "a string", value)
    if len(stop) > MAX_STOP_SEQUENCES:
        raise invalid_request(f"'stop' may contain at most {MAX_STOP_SEQUENCES} sequences; got {len(stop)}.", "stop")


def _mappings(body: dict[str, Any]) -> None:
    """`logit_bias` (token id to a bias in -100..100) and `metadata` (string values)."""
    for token, bias in (field(body, "logit_bias", dict, "an object") or {}).items():
        param = f"logit_bias.{token}" if isinstance(token, str) and len(token) <= 40 else "logit_bias"
        if not is_number(bias):
            raise wrong_type(param, "a number", bias)
        if not -LOGIT_BIAS <= bias <= LOGIT_BIAS:
            raise invalid_request(f"'{param}' must be between -100 and 100; got {show(bias)}.", param)
    for name, value in (field(body, "metadata", dict, "an object") or {}).items():
        if not isinstance(value, str):
            param = f"metadata.{name}" if isinstance(name, str) and len(name) <= 64 else "metadata"
            raise wrong_type(param, "a string", value)


# --- the gateway's own fields ----------------------------------------------------------------


def _provider(body: dict[str, Any]) -> None:
    """OpenRouter's routing preferences, checked here so that routing never meets a bad shape."""
    prefs = field(body, "provider", dict, "an object of routing preferences")
    if prefs is None:
        return
    for name in ("order", "only", "ignore"):
        strings(prefs, name, "provider.")
    sort = prefs.get("sort")
    if isinstance(sort, dict):
        sort = sort.get("by")
    if sort is not None and (not isinstance(sort, str) or sort not in SORTS):
        raise invalid_request("'provider.sort' must be 'price', 'throughput' or 'latency'.", "provider.sort")
    field(prefs, "allow_fallbacks", bool, "a boolean", "provider.")
    max_price = field(prefs, "max_price", dict, "an object of prices in USD per million tokens", "provider.")
    for name in ("prompt", "completion"):
        if max_price is not None:
            number(max_price, name, 0, float("inf"), "provider.max_price.")


def _model_id(body: dict[str, Any]) -> None:
    """The unified API's catalog number: an integer or null (any integer; an unknown one is a 404 later)."""
    value = body.get("model_id")
    if isinstance(value, float) and value.is_integer():
        body["model_id"] = int(value)
    elif value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise invalid_request("Invalid type for 'model_id': expected an integer or null.", "model_id")


# --- the request -----------------------------------------------------------------------------


def validate(body: Any) -> ChatRequest:
    """The request, or a 400 naming the first malformed parameter; nothing else is raised."""
    if not isinstance(body, dict):
        raise invalid_request(f"The request body must be a JSON object, got {type_name(body)}.")
    model = body.get("model")
    if model is None:
        raise missing("model")
    if not isinstance(model, str) or not model.strip():
        raise invalid_request("Invalid value for 'model': expected a non-empty string.", "model")
    _messages(body)
    strings(body, "models", non_empty=True)
    _provider(body)
    _model_id(body)
    number(body, "temperature", 0, 2)
    number(body, "top_p", 0, 1)
    number(body, "frequency_penalty", -2, 2)
    number(body, "presence_penalty", -2, 2)
    max_tokens = integer(body, "max_tokens", 1, MAX_TOKENS)
    max_completion = integer(body, "max_completion_tokens", 1, MAX_TOKENS)
    integer(body, "n", 1, MAX_N)
    integer(body, "seed", -SEED_RANGE, SEED_RANGE - 1)
    integer(body, "top_logprobs", 0, MAX_TOP_LOGPROBS)
    _stop(body)
    for name in BOOLEANS:
        field(body, name, bool, "a boolean")
    for name in STRINGS:
        field(body, name, str, "a string")
    for name in OBJECTS:
        field(body, name, dict, "an object")
    strings(body, "modalities")
    _mappings(body)
    _tools(body)
    _tool_choice(body)
    _response_format(body)
    options = field(body, "stream_options", dict, "an object") or {}
    field(options, "include_usage", bool, "a boolean", "stream_options.")
    stream = body.get("stream") is True
    return ChatRequest(
        body=body,
        model=model,
        stream=stream,
        include_usage=stream and options.get("include_usage", True) is not False,
        max_tokens=max_completion or max_tokens,
    )
