"""Validation of a chat completion request, with errors that name the parameter.

The body is checked, never rebuilt: whatever passes goes upstream untouched, unknown
fields and unknown keys inside messages and content parts included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.errors import invalid_request

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
MAX_STOP_SEQUENCES = 4
MAX_N = 128


@dataclass(frozen=True, slots=True)
class ChatRequest:
    body: dict[str, Any]
    model: str
    stream: bool
    include_usage: bool
    max_tokens: int | None  # max_completion_tokens or max_tokens, whichever the caller set


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(body: dict[str, Any], name: str, low: float, high: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if not _is_number(value):
        raise invalid_request(f"Invalid type for '{name}': expected a number, got {_type(value)}.", name)
    if not low <= value <= high:
        raise invalid_request(f"'{name}' must be between {low:g} and {high:g}; got {value}.", name)


def _positive_int(body: dict[str, Any], name: str, upper: int | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not _is_int(value) or value < 1:
        raise invalid_request(f"'{name}' must be a positive integer; got {value!r}.", name)
    if upper is not None and value > upper:
        raise invalid_request(f"'{name}' must be at most {upper}; got {value}.", name)
    return value


def _typed(body: dict[str, Any], name: str, kinds: tuple[type, ...], expected: str, prefix: str = "") -> None:
    value = body.get(name)
    if value is None:
        return
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        param = prefix + name
        raise invalid_request(f"Invalid type for '{param}': expected {expected}, got {_type(value)}.", param)


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


def _content(content: Any, param: str, role: str) -> None:
    if content is None:
        if role in ("assistant", "function"):
            return  # an assistant turn that only called tools
        raise invalid_request(f"Missing required parameter: '{param}'.", param)
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise invalid_request(
            f"Invalid type for '{param}': expected a string or an array of content parts, got {_type(content)}.",
            param,
        )
    for j, part in enumerate(content):
        if not isinstance(part, dict):
            raise invalid_request(
                f"Invalid type for '{param}[{j}]': expected an object, got {_type(part)}.", f"{param}[{j}]"
            )
        if not isinstance(part.get("type"), str):
            raise invalid_request(f"Missing required parameter: '{param}[{j}].type'.", f"{param}[{j}].type")
        if part["type"] == "text" and not isinstance(part.get("text"), str):
            raise invalid_request(f"Missing required parameter: '{param}[{j}].text'.", f"{param}[{j}].text")


def _messages(body: dict[str, Any]) -> None:
    messages = body.get("messages")
    if messages is None:
        raise invalid_request("Missing required parameter: 'messages'.", "messages")
    if not isinstance(messages, list):
        raise invalid_request(f"Invalid type for 'messages': expected an array, got {_type(messages)}.", "messages")
    if not messages:
        raise invalid_request("'messages' must contain at least one message.", "messages", "empty_array")
    for i, message in enumerate(messages):
        param = f"messages[{i}]"
        if not isinstance(message, dict):
            raise invalid_request(f"Invalid type for '{param}': expected an object, got {_type(message)}.", param)
        role = message.get("role")
        if role not in ROLES:
            allowed = "', '".join(sorted(ROLES - {"function"}))
            raise invalid_request(
                f"Invalid value for '{param}.role': {role!r}. Supported values are: '{allowed}'.",
                f"{param}.role",
            )
        if role == "assistant" and message.get("tool_calls") and "content" not in message:
            continue
        _content(message.get("content"), f"{param}.content", role)
        if role == "tool" and not isinstance(message.get("tool_call_id"), str):
            raise invalid_request(f"Missing required parameter: '{param}.tool_call_id'.", f"{param}.tool_call_id")


def _stop(body: dict[str, Any]) -> None:
    stop = body.get("stop")
    if stop is None or isinstance(stop, str):
        return
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise invalid_request("Invalid type for 'stop': expected a string or an array of strings.", "stop")
    if len(stop) > MAX_STOP_SEQUENCES:
        raise invalid_request(f"'stop' may contain at most {MAX_STOP_SEQUENCES} sequences; got {len(stop)}.", "stop")


def validate(body: Any) -> ChatRequest:
    if not isinstance(body, dict):
        raise invalid_request(f"The request body must be a JSON object, got {_type(body)}.")
    model = body.get("model")
    if model is None:
        raise invalid_request("Missing required parameter: 'model'.", "model")
    if not isinstance(model, str) or not model.strip():
        raise invalid_request("Invalid value for 'model': expected a non-empty string.", "model")
    _messages(body)
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    _number(body, "frequency_penalty", -2, 2)
    _number(body, "presence_penalty", -2, 2)
    max_tokens = _positive_int(body, "max_tokens")
    max_completion = _positive_int(body, "max_completion_tokens")
    _positive_int(body, "n", MAX_N)
    _stop(body)
    _typed(body, "stream", (bool,), "a boolean")
    _typed(body, "stream_options", (dict,), "an object")
    _typed(body, "tools", (list,), "an array")
    _typed(body, "tool_choice", (str, dict), "a string or an object")
    _typed(body, "response_format", (dict,), "an object")
    _typed(body, "seed", (int,), "an integer")
    _typed(body, "user", (str,), "a string")
    for i, tool in enumerate(body.get("tools") or ()):
        if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
            raise invalid_request(f"Invalid value for 'tools[{i}]': expected a tool object with a type.", f"tools[{i}]")
    choice = body.get("tool_choice")
    if isinstance(choice, str) and choice not in ("none", "auto", "required"):
        raise invalid_request(
            f"Invalid value for 'tool_choice': {choice!r}. Supported values are: 'none', 'auto', "
            "'required', or an object naming a function.",
            "tool_choice",
        )
    options = body.get("stream_options") or {}
    _typed(options, "include_usage", (bool,), "a boolean", "stream_options.")
    stream = bool(body.get("stream"))
    return ChatRequest(
        body=body,
        model=model,
        stream=stream,
        include_usage=stream and options.get("include_usage", True) is not False,
        max_tokens=max_completion or max_tokens,
    )
