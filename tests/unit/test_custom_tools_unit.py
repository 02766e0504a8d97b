"""Custom (freeform) tools, tool search and code mode as Codex sends them (0.171.0, run offline), no servers:
the Responses ingress, the canonical shape, what a provider without custom tools is sent, and the calls back."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from typing import Any

import orjson

from gateway.chat import custom_tools
from gateway.wire.chat.request import validate
from gateway.wire.responses import stream as responses_stream
from gateway.wire.responses.answer import whole
from gateway.wire.responses.request import translate
from gateway.wire.stream import Delta, Finish, Item, render

GRAMMAR = 'start: begin_patch hunk+ end_patch\nbegin_patch: "*** Begin Patch" LF'
APPLY_PATCH = {
    "type": "custom",
    "name": "apply_patch",
    "format": {"type": "grammar", "syntax": "lark", "definition": GRAMMAR},
}
EXEC = {
    "type": "function",
    "name": "exec_command",
    "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}},
}
PATCH = "*** Begin Patch\n*** Add File: hello.txt\n+hi\n*** End Patch\n"


def codex(**fields: Any) -> dict[str, Any]:
    """Codex's request with a model it ships metadata for (trimmed): a custom apply_patch, client tool search."""
    return {
        "model": "gpt-5.5",
        "stream": True,
        "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "You are Codex."}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "create hello.txt"}]},
        ],
        "tools": [
            EXEC,
            APPLY_PATCH,
            {"type": "tool_search", "execution": "client", "parameters": {"type": "object", "properties": {}}},
            {"type": "web_search", "external_web_access": True},
        ],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "reasoning": {"effort": "medium"},
        "store": False,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "k",
        "text": {"verbosity": "low"},
        **fields,
    }


def test_custom_tools_and_client_tool_search_become_chat_tools() -> None:
    translation = translate(codex())
    validate(translation.body)
    tools = {t[t["type"]]["name"]: t for t in translation.body["tools"]}
    assert tools["apply_patch"] == {
        "type": "custom",
        "custom": {
            "name": "apply_patch",
            "format": {"type": "grammar", "grammar": {"definition": GRAMMAR, "syntax": "lark"}},
        },
    }
    assert tools["tool_search"]["type"] == "function" and "web_search" not in tools
    assert translation.customs == {"apply_patch"}


def test_code_mode_s_additional_tools_and_custom_calls_and_array_outputs() -> None:
    exec_tool = {
        "type": "custom",
        "name": "exec",
        "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"},
    }
    namespace = {"type": "namespace", "name": "functions", "tools": [exec_tool, {**EXEC, "name": "wait"}]}
    body = codex(model="gpt-6.2-sol", parallel_tool_calls=False)
    del body["tools"]
    body["input"] = [
        {"type": "additional_tools", "id": "at_1", "role": "developer", "tools": [namespace]},
        *body["input"],
        {"type": "custom_tool_call", "id": "ctc_1", "call_id": "call_1", "name": "exec", "input": "await tools.x()"},
        {"type": "custom_tool_call_output", "call_id": "call_1", "output": [{"type": "input_text", "text": "done"}]},
    ]
    translation = translate(body)
    validate(translation.body)
    assert {t[t["type"]]["name"] for t in translation.body["tools"]} == {"exec", "wait"}
    assert translation.namespaces == {"exec": "functions", "wait": "functions"}
    call, result = translation.body["messages"][-2:]
    assert call["tool_calls"] == [
        {"id": "call_1", "type": "custom", "custom": {"name": "exec", "input": "await tools.x()"}}
    ]
    assert result == {"role": "tool", "tool_call_id": "call_1", "content": "done"}


def test_a_provider_without_custom_tools_gets_functions_of_one_string_and_the_history_to_match() -> None:
    body = codex()
    body["input"] += [
        {"type": "custom_tool_call", "call_id": "call_1", "name": "apply_patch", "input": PATCH},
        {"type": "custom_tool_call_output", "call_id": "call_1", "output": "Done!"},
    ]
    canonical = translate(body).body
    sent, names = custom_tools.as_functions(canonical)
    assert names == {"apply_patch"}
    (tool,) = [t for t in sent["tools"] if t["function"]["name"] == "apply_patch"]
    assert tool["function"]["parameters"]["required"] == ["input"] and GRAMMAR in tool["function"]["description"]
    (call,) = sent["messages"][-2]["tool_calls"]
    assert call["type"] == "function" and json.loads(call["function"]["arguments"]) == {"input": PATCH}
    assert canonical["messages"][-2]["tool_calls"][0]["type"] == "custom"  # the caller's body is not changed


def test_a_streamed_call_of_a_converted_tool_comes_back_whole_as_a_custom_call() -> None:
    held = custom_tools.Held(frozenset({"apply_patch"}))
    arguments = orjson.dumps({"input": PATCH}).decode()
    first = {
        "tool_calls": [
            {"index": 0, "id": "call_9", "type": "function", "function": {"name": "apply_patch", "arguments": ""}}
        ]
    }
    rest = [
        {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]} for piece in (arguments[:9], arguments[9:])
    ]
    other = {
        "tool_calls": [
            {"index": 1, "id": "call_2", "type": "function", "function": {"name": "exec_command", "arguments": "{}"}}
        ]
    }
    for delta in (first, *rest, other):
        held.take(0, delta)
    assert "tool_calls" not in first and other["tool_calls"][0]["function"]["name"] == "exec_command"
    assert held.release(0) == [
        {"index": 0, "id": "call_9", "type": "custom", "custom": {"name": "apply_patch", "input": PATCH}}
    ]
    whole_call = {"id": "call_3", "type": "function", "function": {"name": "apply_patch", "arguments": arguments}}
    assert custom_tools.restored(whole_call, frozenset({"apply_patch"}))["custom"]["input"] == PATCH


def test_a_custom_call_is_a_custom_tool_call_item_whole_and_streamed() -> None:
    translation = translate(codex())
    head = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": "gpt-5.5"}
    call = {"index": 0, "id": "call_9", "type": "custom", "custom": {"name": "apply_patch", "input": PATCH}}

    async def items() -> AsyncGenerator[Item]:
        yield Delta(
            {
                **head,
                "choices": [
                    {"index": 0, "delta": {"role": "assistant", "tool_calls": [call]}, "finish_reason": "tool_calls"}
                ],
            }
        )
        yield Finish({**head, "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

    async def run() -> list[dict[str, Any]]:
        events = [e async for e in render(items(), responses_stream.Renderer(translation))]
        return [json.loads(e.split(b"\ndata: ", 1)[1]) for e in events]

    events = asyncio.run(run())
    kinds = [e["type"] for e in events]
    assert "response.custom_tool_call_input.delta" in kinds and "response.custom_tool_call_input.done" in kinds
    (done,) = [e for e in events if e["type"] == "response.output_item.done"]
    assert done["item"]["type"] == "custom_tool_call" and done["item"]["input"] == PATCH
    assert done["item"]["call_id"] == "call_9" and done["item"]["name"] == "apply_patch"
    message = {"role": "assistant", "content": None, "tool_calls": [{k: v for k, v in call.items() if k != "index"}]}
    completion = {
        "id": "chatcmpl-1",
        "model": "gpt-5.5",
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1},
    }
    (item,) = whole(completion, translation)["output"]
    assert item["type"] == "custom_tool_call" and item["input"] == PATCH
