"""Property tests of the Responses translator: no request body, however malformed, gets anything but a canonical
chat request that validate() accepts or a 400 naming a parameter; and the renderers' output is always the SDK's
own types, whatever a provider's chunks hold."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from gateway.errors import GatewayError
from gateway.wire.chat.request import validate
from gateway.wire.responses import request
from gateway.wire.responses import stream as responses_stream
from gateway.wire.responses.answer import whole
from gateway.wire.stream import Delta, Failure, Finish, Item, render
from tests.support.strategies import ANY, plausible

STREAM_EVENT = TypeAdapter(ResponseStreamEvent)
URL = st.sampled_from(["https://example.com/a.png", "data:image/png;base64,iVBORw0KGgo="])
PART = plausible(
    ("type", "text", "image_url", "file_id", "detail", "file_data", "filename", "file_url", "input_audio", "refusal"),
    {
        "type": st.sampled_from(
            ["input_text", "output_text", "input_image", "input_file", "input_audio", "refusal", "x"]
        ),
        "text": st.text(max_size=10),
        "image_url": URL,
        "file_data": URL,
        "input_audio": st.just({"data": "AAAA", "format": "wav"}),
    },
    required=("type",),
)
FUNCTION_TOOL = plausible(
    ("type", "name", "description", "parameters", "strict"),
    {
        "type": st.just("function"),
        "name": st.sampled_from(["a", "b"]),
        "parameters": st.just({"type": "object"}),
        "strict": st.booleans(),
    },
    required=("type", "name"),
)
ITEM = plausible(
    ("type", "role", "content", "call_id", "name", "arguments", "output", "id", "summary"),
    {
        "type": st.sampled_from(
            ["message", "function_call", "function_call_output", "reasoning", "item_reference", "web_search_call"]
        ),
        "role": st.sampled_from(["user", "assistant", "system", "developer", "tool"]),
        "content": st.text(max_size=10) | st.lists(PART, max_size=3),
        "call_id": st.sampled_from(["call_1", "call_2"]),
        "name": st.sampled_from(["a", "b"]),
        "arguments": st.just("{}"),
        "output": st.text(max_size=10) | st.lists(PART, max_size=2),
        "id": st.sampled_from(["rs_1", "msg_1"]),
    },
)
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "model": st.just("gateway-echo"),
    "input": st.text(max_size=10) | st.lists(ITEM, max_size=5),
    "instructions": st.text(max_size=10),
    "tools": st.lists(
        FUNCTION_TOOL
        | plausible(
            ("type", "name", "description", "tools"),
            {"type": st.sampled_from(["namespace", "web_search"]), "tools": st.lists(FUNCTION_TOOL, max_size=2)},
        ),
        max_size=3,
    ),
    "tool_choice": st.sampled_from(["auto", "none", "required", "sometimes"])
    | plausible(
        ("type", "name", "mode", "tools"),
        {
            "type": st.sampled_from(["function", "allowed_tools", "file_search"]),
            "name": st.just("a"),
            "mode": st.sampled_from(["auto", "required", "x"]),
            "tools": st.lists(st.just({"type": "function", "name": "a"}), max_size=2),
        },
    ),
    "max_output_tokens": st.integers(-2, 50),
    "temperature": st.floats(-1, 3),
    "text": plausible(
        ("format", "verbosity"),
        {
            "format": plausible(
                ("type", "name", "schema", "strict"),
                {
                    "type": st.sampled_from(["text", "json_object", "json_schema", "yaml"]),
                    "name": st.just("x"),
                    "schema": st.just({"type": "object"}),
                },
            )
        },
    ),
    "reasoning": plausible(("effort", "summary"), {"effort": st.sampled_from(["low", "high"])}),
    "store": st.booleans(),
    "stream": st.booleans(),
    "background": st.booleans(),
    "previous_response_id": st.none() | st.just("resp_1"),
    "include": st.lists(st.just("reasoning.encrypted_content"), max_size=1),
    "truncation": st.sampled_from(["auto", "disabled", "sometimes"]),
    "parallel_tool_calls": st.booleans(),
    "metadata": st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=2),
}
BODY = plausible((*FIELDS, "client_metadata", "x_unknown"), FIELDS) | ANY


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(BODY)
def test_any_body_is_a_valid_chat_request_or_a_400_naming_a_responses_parameter(body: Any) -> None:
    try:
        translation = request.translate(body)
        validate(translation.body)
    except GatewayError as exc:
        if "translation" in locals():
            exc = exc.located(translation.locate)
        assert exc.status == 400, exc.message
        assert exc.param is None or not exc.param.startswith(("messages", "max_completion_tokens", "response_format"))
        return
    assert set(translation.body) <= request.FORWARDED | {
        "messages",
        "tools",
        "tool_choice",
        "max_completion_tokens",
        "response_format",
        "reasoning_effort",
        "verbosity",
    }
    Response.model_validate(
        whole(completion(), translation) | {"model": "gateway-echo"}, strict=True
    )  # whatever the request, the echo it carries is of the SDK's types


def completion(content: Any = "hi", calls: Any = None, finish: str = "stop") -> dict[str, Any]:
    message = {"role": "assistant", "content": content, **({"tool_calls": calls} if calls else {})}
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5, "cost": 0.5}
    return {
        "id": "chatcmpl-1",
        "model": "m",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage,
    }


DELTA = plausible(
    ("content", "refusal", "reasoning_content", "reasoning", "tool_calls", "role"),
    {
        "content": st.text(max_size=4),
        "refusal": st.text(max_size=4),
        "reasoning_content": st.text(max_size=4),
        "tool_calls": st.lists(
            plausible(
                ("index", "id", "function"),
                {
                    "index": st.integers(0, 2),
                    "id": st.sampled_from(["call_1", "call_2"]),
                    "function": plausible(
                        ("name", "arguments"), {"name": st.just("f"), "arguments": st.text(max_size=3)}
                    ),
                },
            ),
            max_size=2,
        ),
    },
)
CHUNK = st.builds(
    lambda delta, finish: {
        "id": "chatcmpl-1",
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    },
    DELTA,
    st.sampled_from([None, None, "stop", "length", "tool_calls", "content_filter"]),
)
END = st.sampled_from(
    [
        {"id": "chatcmpl-1", "model": "m", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}},
        {"error": {"message": "cut", "type": "upstream_error", "param": None, "code": "upstream_error"}},
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(CHUNK, max_size=8), END)
def test_any_canonical_stream_renders_as_the_sdk_s_events(chunks: list[dict[str, Any]], end: dict[str, Any]) -> None:
    async def canonical() -> AsyncGenerator[Item]:
        for chunk in chunks:
            if chunk["choices"]:
                yield Delta(chunk)
        yield Failure(end["error"]) if "error" in end else Finish(end)

    async def rendered() -> list[bytes]:
        translation = request.translate({"model": "m", "input": "hi"})
        return [event async for event in render(canonical(), responses_stream.Renderer(translation))]

    events = [json.loads(raw.split(b"\ndata: ", 1)[1]) for raw in asyncio.run(rendered())]
    for event in events:
        STREAM_EVENT.validate_python(event, strict=True)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    last = events[-1]["type"]
    assert last == "error" if "error" in end else last in ("response.completed", "response.incomplete")


MESSAGE = plausible(
    ("content", "refusal", "reasoning_content", "tool_calls"),
    {
        "content": st.none() | st.text(max_size=4) | st.lists(st.just({"type": "text", "text": "a"}), max_size=2),
        "refusal": st.none() | st.text(max_size=4),
        "reasoning_content": st.text(max_size=4),
        "tool_calls": st.lists(
            plausible(
                ("id", "type", "function"),
                {"id": st.just("call_1"), "function": st.just({"name": "f", "arguments": "{}"})},
            ),
            max_size=2,
        ),
    },
)


@settings(max_examples=200, deadline=None)
@given(MESSAGE, st.sampled_from(["stop", "length", "tool_calls", "content_filter"]))
def test_any_whole_answer_renders_as_a_response(message: dict[str, Any], finish: str) -> None:
    translation = request.translate({"model": "m", "input": "hi"})
    answer = completion() | {"choices": [{"index": 0, "message": message, "finish_reason": finish}]}
    body = whole(answer, translation)
    Response.model_validate(body, strict=True)
    assert body["output"] and body["status"] == (
        "incomplete" if finish in ("length", "content_filter") else "completed"
    )
