"""The one stream driver and each protocol's renderer, from tables of canonical items (no servers).

Each case is a list of items the chat service can yield; each protocol's expected events are the
event types (Anthropic, Responses) or the `data:` payload kinds (chat completions) it must write.
The edge cases behave alike everywhere: a failure ends every stream with the protocol's error,
a stream that stops without finishing ends as a failure, and a failure before any chunk still
opens the stream first.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from typing import Any

import pytest

from gateway.wire.anthropic import stream as anthropic_stream
from gateway.wire.chat import stream as chat_stream
from gateway.wire.responses import stream as responses_stream
from gateway.wire.responses.request import translate
from gateway.wire.stream import Delta, Failure, Finish, Item, Renderer, render

HEAD = {"id": "chatcmpl-abc", "object": "chat.completion.chunk", "created": 0, "model": "m"}
USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5, "cost": 0.001}
ERROR = {"message": "cut", "type": "upstream_error", "param": None, "code": "upstream_error"}


def delta(finish: str | None = None, **fields: Any) -> Delta:
    return Delta({**HEAD, "choices": [{"index": 0, "delta": fields, "finish_reason": finish}]})


def call(index: int, name: str | None, arguments: str) -> Delta:
    function = {"arguments": arguments, **({"name": name} if name else {})}
    return delta(tool_calls=[{"index": index, "id": f"call_{index}", "type": "function", "function": function}])


FINISH = Finish({**HEAD, "choices": [], "usage": USAGE})
CASES: dict[str, list[Item]] = {
    "text": [delta(role="assistant", content="Hel"), delta(content="lo"), delta("stop"), FINISH],
    "tool call": [delta(role="assistant"), call(0, "f", '{"a"'), call(0, None, ": 1}"), delta("tool_calls"), FINISH],
    "reasoning then text": [delta(reasoning_content="think"), delta(content="ok", finish="stop"), FINISH],
    "failure mid-stream": [delta(role="assistant", content="Hel"), Failure(ERROR)],
    "failure first": [Failure(ERROR)],
    "stopped short": [delta(role="assistant", content="Hel")],
    "empty": [],
}
CHAT = {
    "text": ["chunk", "chunk", "chunk", "usage", "[DONE]"],
    "tool call": ["chunk", "chunk", "chunk", "chunk", "usage", "[DONE]"],
    "reasoning then text": ["chunk", "chunk", "usage", "[DONE]"],
    "failure mid-stream": ["chunk", "error"],
    "failure first": ["error"],
    "stopped short": ["chunk", "error"],
    "empty": ["error"],
}
OPEN = ["message_start", "ping"]
BLOCK = ["content_block_start", "content_block_delta"]
END = ["content_block_stop", "message_delta", "message_stop"]
ANTHROPIC = {
    "text": [*OPEN, *BLOCK, "content_block_delta", *END],
    "tool call": [*OPEN, *BLOCK, "content_block_delta", *END],
    "reasoning then text": [*OPEN, *BLOCK, "content_block_stop", *BLOCK, *END],
    "failure mid-stream": [*OPEN, *BLOCK, "error"],
    "failure first": [*OPEN, "error"],
    "stopped short": [*OPEN, *BLOCK, "error"],
    "empty": [*OPEN, "error"],
}
CREATED = ["response.created", "response.in_progress"]
TEXT_OPEN = ["response.output_item.added", "response.content_part.added", "response.output_text.delta"]
TEXT_DONE = ["response.output_text.done", "response.content_part.done", "response.output_item.done"]
ARGUMENTS = "response.function_call_arguments"
SUMMARY = "response.reasoning_summary"
FAILED = ["response.failed", "error"]
RESPONSES = {
    "text": [*CREATED, *TEXT_OPEN, "response.output_text.delta", *TEXT_DONE, "response.completed"],
    "tool call": [
        *CREATED,
        "response.output_item.added",
        f"{ARGUMENTS}.delta",
        f"{ARGUMENTS}.delta",
        f"{ARGUMENTS}.done",
        "response.output_item.done",
        "response.completed",
    ],
    "reasoning then text": [
        *CREATED,
        "response.output_item.added",
        f"{SUMMARY}_part.added",
        f"{SUMMARY}_text.delta",
        f"{SUMMARY}_text.done",
        f"{SUMMARY}_part.done",
        "response.output_item.done",
        *TEXT_OPEN,
        *TEXT_DONE,
        "response.completed",
    ],
    "failure mid-stream": [*CREATED, *TEXT_OPEN, *FAILED],
    "failure first": [*CREATED, *FAILED],
    "stopped short": [*CREATED, *TEXT_OPEN, *FAILED],
    "empty": [*CREATED, *FAILED],
}


def rendered(items: list[Item], renderer: Renderer) -> list[bytes]:
    async def source() -> AsyncGenerator[Item]:
        for item in items:
            yield item

    async def run() -> list[bytes]:
        return [event async for event in render(source(), renderer)]

    return asyncio.run(run())


def kinds(events: list[bytes]) -> list[str]:
    """The event type of each SSE event (its `event:` line, or for chat what its `data:` holds)."""
    out = []
    for raw in events:
        text = raw.decode()
        if text.startswith("event: "):
            out.append(text.split("\n", 1)[0].removeprefix("event: "))
            continue
        data = text.removeprefix("data: ").strip()
        if data == "[DONE]":
            out.append("[DONE]")
        else:
            payload = json.loads(data)
            out.append("error" if "error" in payload else "usage" if payload.get("usage") else "chunk")
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_chat_completions(case: str) -> None:
    assert kinds(rendered(CASES[case], chat_stream.Renderer(include_usage=True))) == CHAT[case]


def test_chat_completions_without_usage() -> None:
    assert kinds(rendered(CASES["text"], chat_stream.Renderer(include_usage=False))) == ["chunk"] * 3 + ["[DONE]"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_anthropic_messages(case: str) -> None:
    canonical = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert kinds(rendered(CASES[case], anthropic_stream.Renderer(canonical))) == ANTHROPIC[case]


@pytest.mark.parametrize("case", sorted(CASES))
def test_openai_responses(case: str) -> None:
    translation = translate({"model": "m", "input": "hi"})
    assert kinds(rendered(CASES[case], responses_stream.Renderer(translation))) == RESPONSES[case]


def test_a_client_that_hangs_up_closes_the_items_at_once() -> None:
    """Closing the rendered stream closes the canonical one: the chat service settles in its `finally`."""
    closed = []

    async def source() -> AsyncGenerator[Item]:
        try:
            yield delta(role="assistant", content="Hel")
            yield delta(content="lo")
        finally:
            closed.append(True)

    async def run() -> None:
        events = render(source(), chat_stream.Renderer(include_usage=True))
        await anext(events)
        await events.aclose()  # type: ignore[attr-defined]

    asyncio.run(run())
    assert closed == [True]
