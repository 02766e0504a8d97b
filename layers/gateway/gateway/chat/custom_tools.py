"""Custom (freeform) tools for providers that take only function tools, and their calls back as custom calls.

A custom tool's input is any text, optionally under a grammar (Codex's apply_patch). OpenAI's chat
completions take them natively (the catalog says which providers do: `custom_tools`); every other
provider gets each as a function tool with one string parameter, `input`, the grammar written into
its description, and the earlier turns' custom calls as calls of that function. What such a provider
calls comes back to the caller as the custom call it is: whole answers at once, streams with the
call held back until its input is complete (a JSON string's fragments are no text yet).
"""

from __future__ import annotations

from typing import Any

import orjson

PARAMETER = "input"
_SCHEMA = {
    "type": "object",
    "properties": {PARAMETER: {"type": "string", "description": "The tool's whole input, as text."}},
    "required": [PARAMETER],
    "additionalProperties": False,
}


def _function(tool: dict[str, Any]) -> dict[str, Any]:
    custom = tool["custom"]
    description = custom.get("description") or ""
    fmt = custom.get("format") or {}
    if fmt.get("type") == "grammar":
        grammar = fmt["grammar"]
        description += f"\n\nThe input must match this {grammar['syntax']} grammar:\n{grammar['definition']}"
    function = {"name": custom["name"], "description": description.strip(), "parameters": _SCHEMA}
    return {"type": "function", "function": function}


def _call(call: Any) -> Any:
    if not isinstance(call, dict) or call.get("type") != "custom":
        return call
    custom = call["custom"]
    arguments = orjson.dumps({PARAMETER: custom["input"]}).decode()
    return {"id": call["id"], "type": "function", "function": {"name": custom["name"], "arguments": arguments}}


def as_functions(body: dict[str, Any]) -> tuple[dict[str, Any], frozenset[str]]:
    """The body with its custom tools (and calls, and a forced choice) as function ones, and their names."""
    tools = body.get("tools") or ()
    names = frozenset(t["custom"]["name"] for t in tools if t.get("type") == "custom")
    history = any(
        isinstance(c, dict) and c.get("type") == "custom"
        for m in body.get("messages") or ()
        for c in m.get("tool_calls") or ()
    )
    if not names and not history:
        return body, names
    sent = {**body, "tools": [_function(t) if t.get("type") == "custom" else t for t in tools]}
    if not sent["tools"]:
        del sent["tools"]
    sent["messages"] = [
        {**m, "tool_calls": [_call(c) for c in m["tool_calls"]]} if m.get("tool_calls") else m for m in body["messages"]
    ]
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "custom":
        sent["tool_choice"] = {"type": "function", "function": {"name": choice["custom"]["name"]}}
    return sent, names


def input_of(arguments: Any) -> str:
    """The text a function call of a converted tool carried; its arguments as they came if they are not ours."""
    try:
        value = orjson.loads(arguments) if isinstance(arguments, str) else None
    except orjson.JSONDecodeError:
        value = None
    if isinstance(value, dict) and isinstance(value.get(PARAMETER), str):
        return value[PARAMETER]
    return arguments if isinstance(arguments, str) else ""


def restored(call: Any, names: frozenset[str]) -> Any:
    """A whole answer's tool call as the custom call it is, when it called a converted tool."""
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or function.get("name") not in names:
        return call
    custom = {"name": function["name"], "input": input_of(function.get("arguments"))}
    return {"id": call.get("id"), "type": "custom", "custom": custom}


class Held:
    """A stream's calls of converted tools, held back until their input is whole, then given as custom calls."""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names
        self.calls: dict[tuple[int, int], dict[str, Any]] = {}  # (choice, tool call index) -> id, name, arguments

    def take(self, choice: int, delta: dict[str, Any]) -> None:
        """Remove the delta's fragments of converted tools' calls, keeping them."""
        calls = delta.get("tool_calls")
        if not isinstance(calls, list):
            return
        kept = []
        for call in calls:
            function = call.get("function") if isinstance(call, dict) else None
            key = (choice, call.get("index", 0) if isinstance(call, dict) else 0)
            if key not in self.calls and isinstance(function, dict) and function.get("name") in self.names:
                self.calls[key] = {"id": call.get("id"), "name": function["name"], "arguments": ""}
            if key in self.calls and isinstance(function, dict):
                self.calls[key]["arguments"] += function.get("arguments") or ""
                continue
            kept.append(call)
        if kept:
            delta["tool_calls"] = kept
        else:
            del delta["tool_calls"]

    def release(self, choice: int) -> list[dict[str, Any]]:
        """The choice's held calls, whole, as custom tool call deltas."""
        out = []
        for key in [k for k in self.calls if k[0] == choice]:
            held = self.calls.pop(key)
            custom = {"name": held["name"], "input": input_of(held["arguments"])}
            out.append({"index": key[1], "id": held["id"], "type": "custom", "custom": custom})
        return out
