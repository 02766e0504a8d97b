"""Responses tools as chat's: function tools, namespaces flattened, `tool_choice`; hosted tools refused or dropped."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway import fields
from gateway.errors import GatewayError, invalid_request
from gateway.fields import one_of, show, string, wrong_type

if TYPE_CHECKING:
    from gateway.wire.responses.request import Translation

TOOL_CHOICES = frozenset({"none", "auto", "required"})
UNSUPPORTED_TOOL = (
    "'{where}' is a {kind} tool, which OpenAI runs on its own servers; the gateway serves every model through chat "
    "completions, which takes function tools (alone or in a namespace) only."
)


# OpenAI's hosted web search runs on OpenAI's servers and is billed per call, so no provider here
# can run it; clients that offer it by default (Codex CLI) still work without it. Forcing it with
# tool_choice stays a 400, and the other hosted tools too: a model cannot do their work itself.
DROPPED_TOOLS = frozenset({"web_search", "web_search_preview", "web_search_preview_2025_03_11"})


def _function(tool: dict[str, Any], where: str) -> dict[str, Any]:
    """A Responses function tool in chat's nested shape."""
    p = where + "."
    function: dict[str, Any] = {"name": string(tool, "name", p, required=True)}
    description = string(tool, "description", p)
    parameters = fields.field(tool, "parameters", dict, "an object (a JSON Schema)", p)
    strict = fields.field(tool, "strict", bool, "a boolean", p)
    for name, value in (("description", description), ("parameters", parameters), ("strict", strict)):
        if value is not None:
            function[name] = value
    return {"type": "function", "function": function}


def _custom(tool: dict[str, Any], where: str) -> dict[str, Any]:
    """A Responses custom (freeform) tool as chat's: its input is text, under a grammar when it has one."""
    p = where + "."
    custom: dict[str, Any] = {"name": string(tool, "name", p, required=True)}
    description = string(tool, "description", p)
    if description is not None:
        custom["description"] = description
    fmt = fields.field(tool, "format", dict, "an object", p)
    if fmt is not None and string(fmt, "type", p + "format.", required=True) == "grammar":
        definition = string(fmt, "definition", p + "format.", required=True)
        syntax = string(fmt, "syntax", p + "format.", required=True)
        custom["format"] = {"type": "grammar", "grammar": {"definition": definition, "syntax": syntax}}
    elif fmt is not None:
        custom["format"] = {"type": "text"}
    return {"type": "custom", "custom": custom}


def _tool_search(tool: dict[str, Any], where: str) -> dict[str, Any]:
    """Tool search that the client runs (Codex's): to the model, a function named `tool_search`."""
    if tool.get("execution") != "client":
        raise _unsupported_tool("tool_search", where)
    function: dict[str, Any] = {"name": "tool_search", "description": string(tool, "description", where + ".") or ""}
    function["description"] = function["description"] or "Search the available tools; returns those that match."
    parameters = fields.field(tool, "parameters", dict, "an object (a JSON Schema)", where + ".")
    function["parameters"] = parameters or {"type": "object", "properties": {"query": {"type": "string"}}}
    return {"type": "function", "function": function}


def _tool_kind(tool: Any, where: str) -> str:
    if not isinstance(tool, dict):
        raise wrong_type(where, "a tool object", tool)
    return str(string(tool, "type", where + ".", required=True))


def _unsupported_tool(kind: str, where: str) -> GatewayError:
    return invalid_request(UNSUPPORTED_TOOL.format(where=where, kind=show(kind)), where + ".type", "unsupported_tool")


def translate_tools(body: dict[str, Any], chat: dict[str, Any], translation: Translation) -> None:
    """Function and custom tools into chat's nested shapes, a namespace's flattened (its tools keep their names,
    and their calls are answered with the namespace), client-run tool search as a function, the tools an
    input item added (Codex's `additional_tools`), and `tool_choice` (allowed_tools narrows the list itself)."""
    named: dict[str, tuple[str, dict[str, Any]]] = {}
    builders = {"function": _function, "custom": _custom, "tool_search": _tool_search}

    def add(tool: dict[str, Any], kind: str, where: str, namespace: str | None = None) -> None:
        built = builders[kind](tool, where)
        name = built[built["type"]]["name"]
        if name in named:
            raise invalid_request(f"'{where}.name': two tools are named {show(name)}.", where + ".name")
        named[name] = (where, built)
        if built["type"] == "custom":
            translation.customs.add(name)
        if namespace is not None:
            translation.namespaces[name] = namespace

    offered = [(f"tools[{i}]", t) for i, t in enumerate(fields.field(body, "tools", list, "an array") or ())]
    for where, tool in [*offered, *translation.additional]:
        kind = _tool_kind(tool, where)
        if kind in builders:
            add(tool, kind, where)
        elif kind in DROPPED_TOOLS:
            continue  # Codex offers it on every turn: without it the model answers from what it knows
        elif kind == "namespace":
            namespace = str(string(tool, "name", where + ".", required=True))
            for j, inner in enumerate(fields.field(tool, "tools", list, "an array", where + ".", required=True)):
                inner_where = f"{where}.tools[{j}]"
                inner_kind = _tool_kind(inner, inner_where)
                if inner_kind not in ("function", "custom"):
                    raise _unsupported_tool(inner_kind, inner_where)
                add(inner, inner_kind, inner_where, namespace)
        else:
            raise _unsupported_tool(kind, where)
    choice = body.get("tool_choice")
    if isinstance(choice, str):
        one_of(choice, tuple(sorted(TOOL_CHOICES)), "tool_choice")
        chat["tool_choice"] = choice
    elif isinstance(choice, dict):
        kind = string(choice, "type", "tool_choice.", required=True)
        if kind in ("function", "custom"):
            chat["tool_choice"] = {"type": kind, kind: {"name": string(choice, "name", "tool_choice.", True)}}
        elif kind == "allowed_tools":
            mode = string(choice, "mode", "tool_choice.", required=True)
            one_of(str(mode), ("auto", "required"), "tool_choice.mode")
            allowed = set()
            for j, tool in enumerate(fields.field(choice, "tools", list, "an array", "tool_choice.", required=True)):
                where = f"tool_choice.tools[{j}]"
                if not isinstance(tool, dict) or tool.get("type") not in ("function", "custom"):
                    raise invalid_request(
                        f"'{where}' must be a function or custom tool: {{'type': 'function', 'name': ...}}.", where
                    )
                allowed.add(string(tool, "name", where + ".", required=True))
            named = {name: entry for name, entry in named.items() if name in allowed}
            chat["tool_choice"] = mode
        else:
            raise invalid_request(
                f"Invalid value for 'tool_choice.type': {show(kind)}. The gateway serves function and custom tools "
                "only: use 'none', 'auto', 'required', {'type': 'function', 'name': ...} or 'allowed_tools'.",
                "tool_choice.type",
                "unsupported_tool",
            )
    elif choice is not None:
        raise wrong_type("tool_choice", "a string or an object", choice)
    if named:
        chat["tools"] = [tool for _, tool in named.values()]
        translation.tool_origins = [where for where, _ in named.values()]
    else:  # Responses takes these without tools; chat completions refuses them
        chat.pop("tool_choice", None)
        chat.pop("parallel_tool_calls", None)
