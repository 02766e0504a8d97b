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


def _type(value: Any) -> str:
    return {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    """A value for an error message: short, and safe for any size (str() of a huge int raises)."""
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else repr(value[:40]) + "..."
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        return str(value) if value.bit_length() <= 64 else "a very large integer"
    if isinstance(value, float):
        return repr(value)
    return _type(value)


def _wrong_type(param: str, expected: str, value: Any) -> GatewayError:
    return invalid_request(f"Invalid type for '{param}': expected {expected}, got {_type(value)}.", param)


def _missing(param: str) -> GatewayError:
    return invalid_request(f"Missing required parameter: '{param}'.", param)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _get(obj: dict[str, Any], key: str, kind: type, expected: str, prefix: str = "", required: bool = False) -> Any:
    """obj[key] when it is of `kind`; None when absent or null (a 400 if required); else a 400.

    For str, list, dict and bool only: numbers go through `_integer` and `_number`.
    """
    value = obj.get(key)
    if value is None:
        if required:
            raise _missing(prefix + key)
        return None
    if not isinstance(value, kind):
        raise _wrong_type(prefix + key, expected, value)
    return value


def _strings(obj: dict[str, Any], key: str, prefix: str = "", non_empty: bool = False) -> list[str] | None:
    """An optional array of strings; each bad element is named (`models[1]`)."""
    values = _get(obj, key, list, "an array of strings", prefix)
    for i, value in enumerate(values or ()):
        if not isinstance(value, str):
            raise _wrong_type(f"{prefix}{key}[{i}]", "a string", value)
        if non_empty and not value.strip():
            raise invalid_request(
                f"Invalid value for '{prefix}{key}[{i}]': expected a non-empty string.", f"{prefix}{key}[{i}]"
            )
    return values


def _integer(obj: dict[str, Any], key: str, low: int, high: int, prefix: str = "") -> int | None:
    """An optional integer within [low, high]; an integral float (70.0) is stored back as the int it is."""
    value = obj.get(key)
    if value is None:
        return None
    param = prefix + key
    if isinstance(value, float) and value.is_integer():
        value = int(value)
        obj[key] = value  # the upstream receives 70, as the caller meant
    elif not isinstance(value, int) or isinstance(value, bool):
        raise invalid_request(f"Invalid type for '{param}': expected an integer, got {_show(value)}.", param)
    if not low <= value <= high:
        if low == 1 and value < 1:
            raise invalid_request(f"'{param}' must be a positive integer; got {_show(value)}.", param)
        raise invalid_request(f"'{param}' must be between {low} and {high}; got {_show(value)}.", param)
    return value


def _number(obj: dict[str, Any], key: str, low: float, high: float, prefix: str = "") -> None:
    value = obj.get(key)
    if value is None:
        return
    param = prefix + key
    if not _is_number(value):
        raise _wrong_type(param, "a number", value)
    if not low <= value <= high:  # NaN fails this too
        bounds = f"at least {low:g}" if high == float("inf") else f"between {low:g} and {high:g}"
        raise invalid_request(f"'{param}' must be {bounds}; got {_show(value)}.", param)


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
TOOL_TYPES = ("function",)  # every other kind (server, hosted, built-in) costs what the request cannot bound


def _unsupported(param: str, message: str, code: str = "unsupported_content") -> GatewayError:
    return invalid_request(f"Invalid value for '{param}': {message}", param, code)


def _part(part: Any, where: str, role: str) -> None:
    """One content part: of a type its role may send, carrying its payload."""
    if not isinstance(part, dict):
        raise _wrong_type(where, "an object", part)
    p = where + "."
    kind = _get(part, "type", str, "a string", p, required=True)
    allowed = PARTS[role]
    if kind not in allowed:
        names = "', '".join(sorted(allowed))
        raise _unsupported(p + "type", f"{_show(kind)}. A {role} message's content parts may be '{names}'.")
    if kind == "text":
        _get(part, "text", str, "a string", p, required=True)
    elif kind == "image_url":
        image = _get(part, "image_url", dict, "an object with a url", p, required=True)
        _get(image, "url", str, "a string", p + "image_url.", required=True)
        _get(image, "detail", str, "a string", p + "image_url.")
    elif kind == "input_audio":
        audio = _get(part, "input_audio", dict, "an object with data and format", p, required=True)
        _get(audio, "data", str, "a string", p + "input_audio.", required=True)
        _get(audio, "format", str, "a string", p + "input_audio.", required=True)
    elif kind == "file":
        file = _get(part, "file", dict, "an object", p, required=True)
        for name in ("file_data", "filename"):
            _get(file, name, str, "a string", p + "file.")
        if file.get("file_id") is not None:
            raise _unsupported(
                p + "file.file_id",
                "a file stored on OpenAI's platform, which the gateway cannot read; send its content as "
                "'file_data' (a data: URL).",
                "unsupported_parameter",
            )
        _get(file, "file_data", str, "a string", p + "file.", required=True)
    elif kind == "refusal":
        _get(part, "refusal", str, "a string", p, required=True)


def _tool_call(call: Any, where: str) -> None:
    if not isinstance(call, dict):
        raise _wrong_type(where, "an object", call)
    p = where + "."
    _get(call, "id", str, "a string", p, required=True)
    kind = _get(call, "type", str, "a string", p, required=True)
    # Token counting and translation read `function` whatever the type says, so its shape always matters.
    function = _get(call, "function", dict, "an object", p, required=kind == "function")
    if function is not None:
        _get(function, "name", str, "a string", p + "function.", required=kind == "function")
        _get(function, "arguments", str, "a string", p + "function.", required=kind == "function")


def _message(message: Any, where: str) -> None:
    if not isinstance(message, dict):
        raise _wrong_type(where, "an object", message)
    p = where + "."
    role = message.get("role")
    if role is None:
        raise _missing(p + "role")
    if not isinstance(role, str) or role not in ROLES:
        allowed = "', '".join(sorted(ROLES - {"function"}))
        raise invalid_request(
            f"Invalid value for '{p}role': {_show(role)}. Supported values are: '{allowed}'.", p + "role"
        )
    _get(message, "name", str, "a string", p)
    calls = _get(message, "tool_calls", list, "an array of tool calls", p)
    for j, call in enumerate(calls or ()):
        _tool_call(call, f"{p}tool_calls[{j}]")
    _get(message, "tool_call_id", str, "a string", p, required=role == "tool")
    function_call = _get(message, "function_call", dict, "an object", p)
    if function_call is not None:
        _get(function_call, "name", str, "a string", p + "function_call.")
        _get(function_call, "arguments", str, "a string", p + "function_call.")
    _get(message, "refusal", str, "a string", p)
    _get(message, "audio", dict, "an object", p)
    content = message.get("content")
    if content is None:
        if role in ("assistant", "function"):
            return  # an assistant turn that only called tools (or refused)
        raise _missing(p + "content")
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _wrong_type(p + "content", "a string or an array of content parts", content)
    for j, part in enumerate(content):
        _part(part, f"{p}content[{j}]", role)


def _messages(body: dict[str, Any]) -> None:
    messages = body.get("messages")
    if messages is None:
        raise _missing("messages")
    if not isinstance(messages, list):
        raise _wrong_type("messages", "an array", messages)
    if not messages:
        raise invalid_request("'messages' must contain at least one message.", "messages", "empty_array")
    for i, message in enumerate(messages):
        _message(message, f"messages[{i}]")


# --- tools and output format -----------------------------------------------------------------


def _tools(body: dict[str, Any]) -> None:
    for i, tool in enumerate(_get(body, "tools", list, "an array") or ()):
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise _wrong_type(where, "a tool object", tool)
        kind = _get(tool, "type", str, "a string", where + ".", required=True)
        if kind not in TOOL_TYPES:
            raise _unsupported(
                where + ".type",
                f"{_show(kind)}. Only 'function' tools are offered: server and hosted tools run, and bill, "
                "on a provider's side, beyond what this gateway can bound; define a function tool instead.",
                "unsupported_tool",
            )
        p = where + ".function."
        function = _get(tool, "function", dict, "an object", where + ".", required=True)
        _get(function, "name", str, "a string", p, required=True)
        _get(function, "description", str, "a string", p)
        _get(function, "parameters", dict, "an object (a JSON Schema)", p)
        _get(function, "strict", bool, "a boolean", p)


def _tool_choice(body: dict[str, Any]) -> None:
    choice = body.get("tool_choice")
    if choice is None:
        return
    if isinstance(choice, str):
        if choice not in TOOL_CHOICES:
            raise invalid_request(
                f"Invalid value for 'tool_choice': {_show(choice)}. Supported values are: 'none', 'auto', "
                "'required', or an object naming a function.",
                "tool_choice",
            )
        return
    if not isinstance(choice, dict):
        raise _wrong_type("tool_choice", "a string or an object", choice)
    kind = _get(choice, "type", str, "a string", "tool_choice.", required=True)
    function = _get(choice, "function", dict, "an object", "tool_choice.", required=kind == "function")
    if function is not None:
        _get(function, "name", str, "a string", "tool_choice.function.", required=kind == "function")


def _response_format(body: dict[str, Any]) -> None:
    fmt = _get(body, "response_format", dict, "an object")
    if fmt is None:
        return
    kind = _get(fmt, "type", str, "a string", "response_format.", required=True)
    schema = _get(fmt, "json_schema", dict, "an object", "response_format.", required=kind == "json_schema")
    if schema is not None:
        _get(schema, "name", str, "a string", "response_format.json_schema.")
        _get(schema, "schema", dict, "an object (a JSON Schema)", "response_format.json_schema.")
        _get(schema, "strict", bool, "a boolean", "response_format.json_schema.")


def _stop(body: dict[str, Any]) -> None:
    stop = body.get("stop")
    if stop is None or isinstance(stop, str):
        return
    if not isinstance(stop, list):
        raise invalid_request("Invalid type for 'stop': expected a string or an array of strings.", "stop")
    for i, value in enumerate(stop):
        if not isinstance(value, str):
            raise _wrong_type(f"stop[{i}]", "a string", value)
    if len(stop) > MAX_STOP_SEQUENCES:
        raise invalid_request(f"'stop' may contain at most {MAX_STOP_SEQUENCES} sequences; got {len(stop)}.", "stop")


def _mappings(body: dict[str, Any]) -> None:
    """`logit_bias` (token id to a bias in -100..100) and `metadata` (string values)."""
    for token, bias in (_get(body, "logit_bias", dict, "an object") or {}).items():
        param = f"logit_bias.{token}" if isinstance(token, str) and len(token) <= 40 else "logit_bias"
        if not _is_number(bias):
            raise _wrong_type(param, "a number", bias)
        if not -LOGIT_BIAS <= bias <= LOGIT_BIAS:
            raise invalid_request(f"'{param}' must be between -100 and 100; got {_show(bias)}.", param)
    for name, value in (_get(body, "metadata", dict, "an object") or {}).items():
        if not isinstance(value, str):
            param = f"metadata.{name}" if isinstance(name, str) and len(name) <= 64 else "metadata"
            raise _wrong_type(param, "a string", value)


# --- the gateway's own fields ----------------------------------------------------------------


def _provider(body: dict[str, Any]) -> None:
    """OpenRouter's routing preferences, checked here so that routing never meets a bad shape."""
    prefs = _get(body, "provider", dict, "an object of routing preferences")
    if prefs is None:
        return
    for name in ("order", "only", "ignore"):
        _strings(prefs, name, "provider.")
    sort = prefs.get("sort")
    if isinstance(sort, dict):
        sort = sort.get("by")
    if sort is not None and (not isinstance(sort, str) or sort not in SORTS):
        raise invalid_request("'provider.sort' must be 'price', 'throughput' or 'latency'.", "provider.sort")
    _get(prefs, "allow_fallbacks", bool, "a boolean", "provider.")
    max_price = _get(prefs, "max_price", dict, "an object of prices in USD per million tokens", "provider.")
    for name in ("prompt", "completion"):
        if max_price is not None:
            _number(max_price, name, 0, float("inf"), "provider.max_price.")


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
        raise invalid_request(f"The request body must be a JSON object, got {_type(body)}.")
    model = body.get("model")
    if model is None:
        raise _missing("model")
    if not isinstance(model, str) or not model.strip():
        raise invalid_request("Invalid value for 'model': expected a non-empty string.", "model")
    _messages(body)
    _strings(body, "models", non_empty=True)
    _provider(body)
    _model_id(body)
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    _number(body, "frequency_penalty", -2, 2)
    _number(body, "presence_penalty", -2, 2)
    max_tokens = _integer(body, "max_tokens", 1, MAX_TOKENS)
    max_completion = _integer(body, "max_completion_tokens", 1, MAX_TOKENS)
    _integer(body, "n", 1, MAX_N)
    _integer(body, "seed", -SEED_RANGE, SEED_RANGE - 1)
    _integer(body, "top_logprobs", 0, MAX_TOP_LOGPROBS)
    _stop(body)
    for name in BOOLEANS:
        _get(body, name, bool, "a boolean")
    for name in STRINGS:
        _get(body, name, str, "a string")
    for name in OBJECTS:
        _get(body, name, dict, "an object")
    _strings(body, "modalities")
    _mappings(body)
    _tools(body)
    _tool_choice(body)
    _response_format(body)
    options = _get(body, "stream_options", dict, "an object") or {}
    _get(options, "include_usage", bool, "a boolean", "stream_options.")
    stream = body.get("stream") is True
    return ChatRequest(
        body=body,
        model=model,
        stream=stream,
        include_usage=stream and options.get("include_usage", True) is not False,
        max_tokens=max_completion or max_tokens,
    )
