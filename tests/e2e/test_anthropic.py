"""The Anthropic adapter against a fake Messages API that enforces Anthropic's documented request shape.

Every call goes over loopback to a real uvicorn server (tests/support/fake_upstream.py): a request the
adapter translates wrongly is refused with a 400 just as Anthropic would refuse it, and the
answers are the documented event sequences, so these tests check both directions of the
translation. Outputs are also checked against OpenAI's schema (tests/support/openapi.py).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

from gateway.config import settings
from gateway.providers.anthropic import Anthropic
from gateway.providers.http import http_client
from gateway.upstream import (
    UpstreamConnectError,
    UpstreamError,
    UpstreamHTTPError,
    UpstreamTimeout,
)
from tests.support import openapi
from tests.support.fake_upstream import API_KEY, TEXT, TIME_JSON, WEATHER_JSON, FakeUpstream, check_request
from tests.support.servers import free_port

T = TypeVar("T")
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
    },
}
TIME_TOOL = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    server = FakeUpstream().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def fresh_settings() -> Iterator[None]:
    """Settings are cached per process; tests that change the environment must not leak it."""
    settings.cache_clear()
    yield
    settings.cache_clear()


@pytest.fixture
def adapter(fake: FakeUpstream) -> Anthropic:
    return Anthropic(fake.base_url, API_KEY, "anthropic")


def run(make: Callable[[], Awaitable[T]]) -> T:
    """Run on a fresh loop and close that loop's pooled client, as pytest-asyncio is not used."""

    async def main() -> T:
        try:
            return await make()
        finally:
            await http_client().aclose()

    return asyncio.run(main())


def body(model: str = "claude-text", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "Hi"}], **extra}


async def collect(stream: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    return [chunk async for chunk in stream]


async def collect_until_error(stream: AsyncIterator[dict[str, Any]]) -> tuple[list[dict[str, Any]], Exception]:
    chunks: list[dict[str, Any]] = []
    try:
        async for chunk in stream:
            chunks.append(chunk)
    except UpstreamError as exc:
        return chunks, exc
    raise AssertionError("the stream ended without an error")


def assemble(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """What a client rebuilds from the chunks: text, tool calls by index, finish reason, usage."""
    text, calls, finish, usage = "", {}, None, None
    for chunk in chunks:
        usage = chunk.get("usage") or usage
        for choice in chunk["choices"]:
            delta = choice["delta"]
            text += delta.get("content") or ""
            for call in delta.get("tool_calls") or ():
                slot = calls.setdefault(call["index"], {"id": None, "name": None, "arguments": "", "deltas": 0})
                if call.get("id"):
                    assert slot["id"] is None, "a tool call's id is sent once, in its first delta"
                    slot["id"], slot["name"] = call["id"], call["function"]["name"]
                slot["arguments"] += (call.get("function") or {}).get("arguments") or ""
                slot["deltas"] += 1
            finish = choice["finish_reason"] or finish
    return {"text": text, "calls": calls, "finish": finish, "usage": usage}


def check_stream_shape(chunks: list[dict[str, Any]]) -> None:
    """The contract chat/service.py relies on: role first, one finish_reason, a final usage chunk."""
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert len({c["id"] for c in chunks}) == 1
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[-1]["choices"] == [] and set(chunks[-1]["usage"]) >= {
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
    }
    reasons = [ch["finish_reason"] for c in chunks for ch in c["choices"] if ch["finish_reason"]]
    assert len(reasons) == 1 and chunks[-2]["choices"][0]["finish_reason"] == reasons[0]
    raw = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    openapi.check_stream(raw, chunks[0]["model"])  # OpenAI's schema, chunk by chunk, and DESIGN.md's rules


# ------------------------------------------------------------------------------------- the fake


HEADERS = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01"}
HI = {"role": "user", "content": "hi"}
USE = {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "a", "input": {}}]}
RESULT = {"type": "tool_result", "tool_use_id": "t", "content": "ok"}
A_TOOL = [{"name": "a", "input_schema": {"type": "object"}}]


@pytest.mark.parametrize(
    ("request_body", "complaint"),
    [
        ({"model": "m", "messages": [HI]}, "max_tokens"),
        ({"model": "m", "max_tokens": 5, "messages": [HI, HI]}, "alternate"),
        ({"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}, "role"),
        ({"model": "m", "max_tokens": 5, "messages": [HI], "n": 1}, "Extra inputs"),
        ({"model": "m", "max_tokens": 5, "messages": [HI], "temperature": 1.5}, "temperature"),
        ({"model": "m", "max_tokens": 5, "messages": [HI], "temperature": 1, "top_p": 1}, "top_p"),
        ({"model": "m", "max_tokens": 5, "messages": [HI, USE, {"role": "user", "content": [RESULT]}]}, "define tools"),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "tools": A_TOOL,
                "messages": [HI, USE, {"role": "user", "content": [{"type": "text", "text": "x"}, RESULT]}],
            },
            "at the beginning",
        ),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "x"}}]}],
            },
            "http(s)",
        ),
        (
            {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]},
            "non-empty",
        ),
    ],
)
def test_fake_refuses_what_anthropic_refuses(request_body: dict[str, Any], complaint: str) -> None:
    """The other tests are only as good as the fake's strictness, so pin it down."""
    refused = check_request(HEADERS, request_body)
    assert refused is not None and refused[0] == 400 and complaint in refused[2]


# ------------------------------------------------------------------------------- whole and streamed


def test_whole_text(adapter: Anthropic, fake: FakeUpstream) -> None:
    result = run(lambda: adapter.complete(body()))
    openapi.validate_chat_completion(result)
    assert result["object"] == "chat.completion"
    assert result["choices"][0]["message"] == {"role": "assistant", "content": TEXT, "refusal": None}
    assert result["choices"][0]["finish_reason"] == "stop"
    assert result["usage"]["prompt_tokens"] == 25 and result["usage"]["completion_tokens"] == 15
    assert result["usage"]["total_tokens"] == 40
    sent = fake.requests[-1]
    assert sent == {
        "model": "claude-text",
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
    }


def test_streamed_text(adapter: Anthropic, fake: FakeUpstream) -> None:
    chunks = run(lambda: collect(adapter.stream(body(stream=True, stream_options={"include_usage": True}))))
    check_stream_shape(chunks)
    got = assemble(chunks)
    assert got["text"] == TEXT and got["finish"] == "stop" and got["calls"] == {}
    assert sum(1 for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")) > 5
    assert got["usage"] == {
        "prompt_tokens": 25,
        "completion_tokens": 15,
        "total_tokens": 40,
        "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
    }
    assert fake.requests[-1]["stream"] is True and "stream_options" not in fake.requests[-1]


# ------------------------------------------------------------------------------ request translation


def test_request_translation(adapter: Anthropic, fake: FakeUpstream) -> None:
    """System hoisting, turn merging, tool history, parameters: the fake refuses any misstep."""
    request = {
        "model": "claude-text",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "developer",
                "content": [{"type": "text", "text": "Use metric units.", "cache_control": {"type": "ephemeral"}}],
            },
            {"role": "user", "content": "What's the weather and time in Zurich?"},
            {"role": "user", "content": [{"type": "text", "text": "Both, please."}]},
            {
                "role": "assistant",
                "content": "Checking.",  # the second id is not one Anthropic accepts as it is
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"location": "Zurich"}'},
                    },
                    {
                        "id": "functions.get_time:1",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": ""},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18 degrees"},
            {"role": "tool", "tool_call_id": "functions.get_time:1", "content": [{"type": "text", "text": "14:05"}]},
            {"role": "user", "content": "Thanks!", "cache_control": {"type": "ephemeral"}},
            {"role": "assistant", "content": ""},
        ],
        "tools": [WEATHER_TOOL, {**TIME_TOOL, "cache_control": {"type": "ephemeral"}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,
        "temperature": 1.6,
        "top_p": 0.9,
        "stop": ["END", "  "],
        "user": "user-42",
        "max_completion_tokens": 77,
        "top_k": 5,
        "n": 1,
        "seed": 7,
        "frequency_penalty": 0.5,
        "logprobs": False,
        "response_format": {"type": "text"},
        "metadata": {"trace": "abc"},
    }
    result = run(lambda: adapter.complete(request))
    assert result["choices"][0]["message"]["content"] == TEXT  # the fake accepted the request
    sent = fake.requests[-1]
    assert sent["system"] == [
        {"type": "text", "text": "Be brief."},
        {"type": "text", "text": "Use metric units.", "cache_control": {"type": "ephemeral"}},
    ]
    assert sent["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What's the weather and time in Zurich?"},
                {"type": "text", "text": "Both, please."},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"location": "Zurich"}},
                {"type": "tool_use", "id": "functions_get_time_1", "name": "get_time", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "18 degrees"},
                {
                    "type": "tool_result",
                    "tool_use_id": "functions_get_time_1",
                    "content": [{"type": "text", "text": "14:05"}],
                },
                {"type": "text", "text": "Thanks!", "cache_control": {"type": "ephemeral"}},
            ],
        },
    ]
    assert sent["tools"] == [
        {
            "name": "get_weather",
            "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}},
            "description": "The weather in a city",
        },
        {"name": "get_time", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}},
    ]
    assert sent["tool_choice"] == {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True}
    assert sent["temperature"] == 1.0 and "top_p" not in sent  # clamped; top_p yields to temperature
    assert sent["stop_sequences"] == ["END"]
    assert sent["metadata"] == {"user_id": "user-42"}
    assert sent["max_tokens"] == 77 and sent["top_k"] == 5
    for dropped in ("n", "seed", "frequency_penalty", "logprobs", "response_format", "max_completion_tokens"):
        assert dropped not in sent


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ("required", {"type": "any"}),
        ({"type": "function", "function": {"name": "get_time"}}, {"type": "tool", "name": "get_time"}),
        (None, None),
    ],
)
def test_tool_choice(adapter: Anthropic, fake: FakeUpstream, choice: Any, expected: Any) -> None:
    extra = {"tools": [WEATHER_TOOL, TIME_TOOL]} | ({"tool_choice": choice} if choice else {})
    run(lambda: adapter.complete(body(**extra)))
    assert fake.requests[-1].get("tool_choice") == expected


def test_parameters_and_private_user_ids(adapter: Anthropic, fake: FakeUpstream) -> None:
    run(lambda: adapter.complete(body(top_p=0.5, stop="END", max_tokens=12, user="ann@example.com")))
    sent = fake.requests[-1]
    assert sent["top_p"] == 0.5 and "temperature" not in sent
    assert sent["stop_sequences"] == ["END"] and sent["max_tokens"] == 12
    user_id = sent["metadata"]["user_id"]
    assert "@" not in user_id and len(user_id) == 64  # an e-mail is sent as an opaque hash


def test_tool_history_without_tools(adapter: Anthropic, fake: FakeUpstream) -> None:
    """A summarising call replays tool turns but offers no tools: Anthropic still needs them defined."""
    messages = [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "t1", "content": "Sunny"},
        {"role": "user", "content": "Summarise."},
    ]
    run(lambda: adapter.complete({"model": "claude-text", "messages": messages}))
    sent = fake.requests[-1]
    assert [t["name"] for t in sent["tools"]] == ["get_weather"] and sent["tool_choice"] == {"type": "none"}


def test_images(adapter: Anthropic, fake: FakeUpstream) -> None:
    content = [
        {"type": "text", "text": "Compare these."},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"}},
        {
            "type": "image_url",
            "image_url": {"url": "https://example.com/cat.jpg"},
            "cache_control": {"type": "ephemeral"},
        },
    ]
    run(lambda: adapter.complete({"model": "claude-text", "messages": [{"role": "user", "content": content}]}))
    assert fake.requests[-1]["messages"][0]["content"] == [
        {"type": "text", "text": "Compare these."},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {
            "type": "image",
            "source": {"type": "url", "url": "https://example.com/cat.jpg"},
            "cache_control": {"type": "ephemeral"},
        },
    ]


@pytest.mark.parametrize("url", ["ftp://example.com/cat.jpg", "data:image/png,not-base64", "data:;base64,AAAA"])
def test_unusable_image_is_refused_before_sending(adapter: Anthropic, fake: FakeUpstream, url: str) -> None:
    sent_before = len(fake.requests)
    request = {
        "model": "claude-text",
        "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}],
    }
    with pytest.raises(UpstreamHTTPError) as caught:
        run(lambda: adapter.complete(request))
    assert caught.value.status == 400 and caught.value.client_fault and not caught.value.retryable
    with pytest.raises(UpstreamHTTPError):
        run(lambda: collect(adapter.stream(request)))
    assert len(fake.requests) == sent_before


# ------------------------------------------------------------------------------------------- tools


def test_tools_whole(adapter: Anthropic) -> None:
    result = run(lambda: adapter.complete(body("claude-tools", tools=[WEATHER_TOOL, TIME_TOOL])))
    openapi.validate_chat_completion(result)
    choice = result["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Let me look both up."
    calls = choice["message"]["tool_calls"]
    assert [(c["id"], c["type"], c["function"]["name"]) for c in calls] == [
        ("toolu_01Weather", "function", "get_weather"),
        ("toolu_02Time", "function", "get_time"),
    ]
    assert json.loads(calls[0]["function"]["arguments"]) == json.loads(WEATHER_JSON)
    assert json.loads(calls[1]["function"]["arguments"]) == json.loads(TIME_JSON)


def test_tools_streamed_arguments_reassemble_exactly(adapter: Anthropic) -> None:
    chunks = run(lambda: collect(adapter.stream(body("claude-tools", tools=[WEATHER_TOOL, TIME_TOOL]))))
    check_stream_shape(chunks)
    got = assemble(chunks)
    assert got["text"] == "Let me look both up." and got["finish"] == "tool_calls"
    assert sorted(got["calls"]) == [0, 1]
    weather, clock = got["calls"][0], got["calls"][1]
    assert (weather["id"], weather["name"]) == ("toolu_01Weather", "get_weather")
    assert (clock["id"], clock["name"]) == ("toolu_02Time", "get_time")
    assert weather["arguments"] == WEATHER_JSON and clock["arguments"] == TIME_JSON  # byte for byte
    assert weather["deltas"] > 5 and clock["deltas"] > 5
    first = next(c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("tool_calls"))
    assert first["choices"][0]["delta"]["tool_calls"][0]["type"] == "function"
    assert got["usage"]["prompt_tokens"] == 472 and got["usage"]["completion_tokens"] == 89


# ----------------------------------------------------------------------------- stop reasons, usage


@pytest.mark.parametrize(
    ("model", "finish"),
    [
        ("claude-text", "stop"),
        ("claude-stop-sequence", "stop"),
        ("claude-length", "length"),
        ("claude-tools", "tool_calls"),
        ("claude-refusal", "content_filter"),
    ],
)
def test_stop_reasons(adapter: Anthropic, model: str, finish: str) -> None:
    tools = {"tools": [WEATHER_TOOL, TIME_TOOL]}
    whole = run(lambda: adapter.complete(body(model, **tools)))
    assert whole["choices"][0]["finish_reason"] == finish
    chunks = run(lambda: collect(adapter.stream(body(model, **tools))))
    assert assemble(chunks)["finish"] == finish


def test_usage_counts_cached_prompt_tokens(adapter: Anthropic) -> None:
    expected = {
        "prompt_tokens": 12 + 100 + 2000,
        "completion_tokens": 30,
        "total_tokens": 2142,
        "prompt_tokens_details": {"cached_tokens": 2000, "cache_write_tokens": 100},
    }
    assert run(lambda: adapter.complete(body("claude-cache")))["usage"] == expected
    assert run(lambda: collect(adapter.stream(body("claude-cache"))))[-1]["usage"] == expected


# ------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("model", "key", "status", "retryable", "text"),
    [
        ("claude-http-400", API_KEY, 400, False, "prompt is too long"),
        ("claude-text", "sk-ant-wrong", 401, False, "invalid x-api-key"),
        ("claude-http-429", API_KEY, 429, True, "rate limit"),
        ("claude-http-529", API_KEY, 529, True, "Overloaded"),
    ],
)
def test_http_errors(fake: FakeUpstream, model: str, key: str, status: int, retryable: bool, text: str) -> None:
    adapter = Anthropic(fake.base_url, key, "anthropic")
    for call in (lambda: adapter.complete(body(model)), lambda: anext(adapter.stream(body(model)))):
        with pytest.raises(UpstreamHTTPError) as caught:
            run(call)  # a stream fails on its first __anext__, so the router can still fall back
        assert caught.value.status == status and caught.value.retryable is retryable
        assert text in caught.value.message and "anthropic returned HTTP" in caught.value.message
        assert caught.value.retry_after == (7.0 if status == 429 else None)


def test_error_event_before_first_chunk(adapter: Anthropic) -> None:
    with pytest.raises(UpstreamHTTPError) as caught:
        run(lambda: anext(adapter.stream(body("claude-early-error"))))
    assert caught.value.status == 529 and caught.value.retryable


def test_error_event_mid_stream(adapter: Anthropic) -> None:
    chunks, error = run(lambda: collect_until_error(adapter.stream(body("claude-midstream-error"))))
    assert chunks and chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    # The only usage is message_start's count of the prompt (a cut stream is billed that), never a final one.
    usages = [c["usage"] for c in chunks if c["choices"] == []]
    assert assemble(chunks)["text"] and len(usages) == 1 and usages[0]["completion_tokens"] <= 1
    assert isinstance(error, UpstreamHTTPError) and error.status == 529 and error.retryable
    assert "overloaded_error: Overloaded" in error.message


@pytest.mark.parametrize("model", ["claude-cut", "claude-drop"])
def test_stream_cut_before_message_stop(adapter: Anthropic, model: str) -> None:
    """A clean end without message_stop and a dropped connection both mean an incomplete answer."""
    chunks, error = run(lambda: collect_until_error(adapter.stream(body(model))))
    assert chunks and isinstance(error, UpstreamConnectError)
    assert all(ch["finish_reason"] is None for c in chunks for ch in c["choices"])


def test_timeouts(adapter: Anthropic, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UPSTREAM_TIMEOUT_SECONDS", "0.3")
    settings.cache_clear()
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout):
        run(lambda: adapter.complete(body("claude-hang")))
    chunks, error = run(lambda: collect_until_error(adapter.stream(body("claude-stall"))))
    assert chunks and isinstance(error, UpstreamTimeout)
    assert time.monotonic() - started < 2.5


def test_unreachable(fake: FakeUpstream) -> None:
    port = free_port()  # nothing listens there
    adapter = Anthropic(f"http://127.0.0.1:{port}/v1", API_KEY, "anthropic")
    with pytest.raises(UpstreamConnectError):
        run(lambda: adapter.complete(body()))
    with pytest.raises(UpstreamConnectError):
        run(lambda: anext(adapter.stream(body())))
