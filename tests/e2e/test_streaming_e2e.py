"""Streamed chat completions end to end: the stream rules of DESIGN.md on real SSE bytes, streamed
tool calls through the SDK, failures before and after the first byte, and a client that hangs up."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import openai
import pytest

from tests.support.fake_upstream import DRIP_GAP, PROMPT_TOKENS, TOOL_ARGUMENTS, UPSTREAM_TIMEOUT, FakeUpstream
from tests.support.kit import user
from tests.support.openapi import check_stream, check_stream_error, validate_error


def stream_raw(http: httpx.Client, model: str, text: str, **extra: Any) -> httpx.Response:
    """POST a streamed request and read the whole body (bounded by the client's timeout)."""
    body = {"model": model, "messages": user(text), "stream": True, **extra}
    return http.post("/chat/completions", json=body)


def content_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def assert_sse_response(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-request-id"]


# --- the built-in model ----------------------------------------------------------------------


def test_builtin_stream_follows_the_rules(http: httpx.Client) -> None:
    response = stream_raw(http, "gateway-echo", "Hello stream")
    assert_sse_response(response)
    chunks = check_stream(response.text, "gateway-echo")
    assert content_of(chunks) == "You said: Hello stream"
    assert chunks[0]["id"].startswith("chatcmpl-")
    usage = chunks[-1]["usage"]
    assert usage["completion_tokens"] == len(
        [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]
    )


def test_builtin_stream_through_the_sdk(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="echo", messages=user("Hi SDK"), stream=True))
    assert {c.model for c in chunks} == {"gateway-echo"}
    assert len({c.id for c in chunks}) == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "You said: Hi SDK"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == chunks[-1].usage.prompt_tokens + chunks[-1].usage.completion_tokens


def test_include_usage_false_drops_the_usage_chunk(http: httpx.Client, client: openai.OpenAI) -> None:
    response = stream_raw(http, "gateway-echo", "no usage please", stream_options={"include_usage": False})
    assert_sse_response(response)
    check_stream(response.text, "gateway-echo", include_usage=False)

    chunks = list(
        client.chat.completions.create(
            model="gateway-echo", messages=user("quiet"), stream=True, stream_options={"include_usage": False}
        )
    )
    assert all(c.usage is None for c in chunks) and chunks[-1].choices


def test_include_usage_true_is_the_same_as_the_default(http: httpx.Client) -> None:
    response = stream_raw(http, "gateway-echo", "usage please", stream_options={"include_usage": True})
    check_stream(response.text, "gateway-echo", include_usage=True)


@pytest.mark.parametrize("accept", ["application/json", "*/*", None])
def test_streaming_does_not_require_an_event_stream_accept_header(http: httpx.Client, accept: str | None) -> None:
    headers = {"accept": accept} if accept else {}
    request = http.build_request(
        "POST",
        "/chat/completions",
        json={"model": "gateway-echo", "messages": user("any accept"), "stream": True},
        headers=headers,
    )
    if accept is None:
        del request.headers["accept"]
    response = http.send(request)
    assert_sse_response(response)
    check_stream(response.text, "gateway-echo")


def test_builtin_streams_a_required_tool_call(client: openai.OpenAI) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    stream = client.chat.completions.create(
        model="gateway-echo", messages=user("find owls"), tools=tools, tool_choice="required", stream=True
    )
    arguments, names, finish = "", set(), None
    for chunk in stream:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or ():
                if call.function is not None:
                    arguments += call.function.arguments or ""
                    names.update([call.function.name] if call.function.name else [])
            finish = choice.finish_reason or finish
    assert names == {"lookup"}
    assert json.loads(arguments) == {"text": "find owls"}
    assert finish == "tool_calls"


# --- a real upstream (the fake) ----------------------------------------------------------------


def test_upstream_stream_follows_the_rules(http: httpx.Client, fake: FakeUpstream, marker: str) -> None:
    response = stream_raw(http, "fake-ok", f"stream me {marker}")
    assert_sse_response(response)
    assert response.headers["x-gateway-provider"] == "fake"
    chunks = check_stream(response.text, "fake-ok")
    assert content_of(chunks) == f"Echo: stream me {marker}"
    assert chunks[-1]["usage"]["prompt_tokens"] == PROMPT_TOKENS  # the upstream's own usage
    assert not any(c["id"].startswith("fake-") for c in chunks), "the upstream's completion id leaked"
    received = fake.one(marker)
    assert received.model == "ok"
    assert received.body["stream"] is True
    assert received.body["stream_options"]["include_usage"] is True  # the gateway must see usage to bill
    assert received.wait_ended(2) == "done"


def test_stream_options_pass_through_with_usage_forced_upstream(
    http: httpx.Client, fake: FakeUpstream, marker: str
) -> None:
    options = {"include_usage": False, "include_obfuscation": False, "x_future": [1]}
    response = stream_raw(http, "fake-ok", marker, stream_options=options)
    check_stream(response.text, "fake-ok", include_usage=False)
    assert fake.one(marker).body["stream_options"] == {**options, "include_usage": True}


def test_a_stream_without_upstream_usage_still_reports_usage(http: httpx.Client, marker: str) -> None:
    response = stream_raw(http, "fake-no-usage", f"count for me {marker}")
    chunks = check_stream(response.text, "fake-no-usage")
    usage = chunks[-1]["usage"]
    assert usage["prompt_tokens"] > 0 and usage["prompt_tokens"] != PROMPT_TOKENS  # the gateway's own count
    assert usage["completion_tokens"] >= 3


def test_a_stream_that_ends_without_done_upstream_ends_cleanly(http: httpx.Client) -> None:
    response = stream_raw(http, "fake-no-done", "no done upstream")
    assert content_of(check_stream(response.text, "fake-no-done")) == "Echo: no done upstream"


def test_an_odd_finish_reason_is_mapped_in_streams(http: httpx.Client) -> None:
    chunks = check_stream(stream_raw(http, "fake-odd-finish", "bye").text, "fake-odd-finish")
    assert [c for c in chunks if c["choices"]][-1]["choices"][0]["finish_reason"] == "stop"


def test_chunks_are_forwarded_as_they_arrive(http: httpx.Client) -> None:
    """The gateway never buffers a stream: the upstream's gaps between chunks reach the client."""
    body = {"model": "fake-drip", "messages": user("one two three four"), "stream": True}
    arrivals: list[float] = []
    with http.stream("POST", "/chat/completions", json=body) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: {") and '"content":"' in line.replace(" ", ""):
                arrivals.append(time.monotonic())
    assert len(arrivals) >= 5
    spread = arrivals[-1] - arrivals[0]
    assert spread >= (len(arrivals) - 2) * DRIP_GAP * 0.7, f"chunks arrived together: spread {spread:.2f}s"


def test_streamed_tool_call_is_reassembled_by_the_sdk(
    http: httpx.Client, client: openai.OpenAI, fake: FakeUpstream, marker: str
) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    raw = stream_raw(http, "fake-tools", f"weather {marker}", tools=tools, tool_choice="required")
    chunks = check_stream(raw.text, "fake-tools")
    assert [c for c in chunks if c["choices"]][-1]["choices"][0]["finish_reason"] == "tool_calls"
    received = fake.one(marker).body
    assert received["tools"] == tools and received["tool_choice"] == "required"

    calls: dict[int, dict[str, str]] = {}
    finish = None
    with client.chat.completions.create(
        model="fake-tools", messages=user("weather again"), tools=tools, stream=True
    ) as stream:
        for chunk in stream:
            for choice in chunk.choices:
                for delta in choice.delta.tool_calls or ():
                    call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                    call["id"] += delta.id or ""
                    if delta.function:
                        call["name"] += delta.function.name or ""
                        call["arguments"] += delta.function.arguments or ""
                finish = choice.finish_reason or finish
    assert calls == {0: {"id": "call_fake_1", "name": "get_weather", "arguments": "".join(TOOL_ARGUMENTS)}}
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris"}
    assert finish == "tool_calls"


# --- failures before the first byte: plain JSON errors, fallback -------------------------------


@pytest.mark.parametrize(
    ("model", "status", "code"),
    [
        ("fake-error-500", 502, "upstream_error"),
        ("fake-error-429", 502, "upstream_error"),
        ("fake-error-400", 400, "upstream_rejected_request"),
        ("fake-hang", 504, "upstream_timeout"),
        ("fake-unreachable", 502, "upstream_error"),
    ],
)
def test_a_failure_before_the_first_byte_is_a_json_error(
    http: httpx.Client, model: str, status: int, code: str
) -> None:
    started = time.monotonic()
    response = stream_raw(http, model, "fail early")
    assert time.monotonic() - started < UPSTREAM_TIMEOUT + 2
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["x-request-id"]
    body = response.json()
    validate_error(body, status=status)
    assert body["error"]["code"] == code


def test_the_sdk_raises_the_status_error_of_a_failed_stream(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="is invalid"):
        client.chat.completions.create(model="fake-error-400", messages=user("x"), stream=True)
    with pytest.raises(openai.InternalServerError) as raised:
        client.chat.completions.create(model="fake-error-500", messages=user("x"), stream=True)
    assert raised.value.status_code == 502


@pytest.mark.parametrize("model", ["fake-fallback", "fake-fallback-429", "fake-fallback-timeout"])
def test_a_stream_falls_back_before_the_first_byte(
    http: httpx.Client, fake: FakeUpstream, marker: str, model: str
) -> None:
    response = stream_raw(http, model, f"fall back {marker}")
    assert_sse_response(response)
    assert response.headers["x-gateway-provider"] == "fake2"
    chunks = check_stream(response.text, model)
    assert content_of(chunks) == f"Echo: fall back {marker}"
    assert [r.prefix for r in fake.find(marker)] == ["/v1", "/second/v1"]


# --- failures after the first byte: an error event, never a clean end --------------------------


@pytest.mark.parametrize(
    ("model", "code"),
    [("fake-cut", "upstream_error"), ("fake-stall", "upstream_timeout"), ("fake-error-mid", "upstream_error")],
)
def test_a_failure_mid_stream_ends_with_an_error_event(http: httpx.Client, model: str, code: str) -> None:
    started = time.monotonic()
    response = stream_raw(http, model, "one two three four five six")
    assert time.monotonic() - started < UPSTREAM_TIMEOUT + 2
    assert_sse_response(response)
    error = check_stream_error(response.text, model)
    assert error["code"] == code, error
    assert error["message"]


@pytest.mark.parametrize(
    ("model", "code"),
    [("fake-cut", "upstream_error"), ("fake-stall", "upstream_timeout"), ("fake-error-mid", "upstream_error")],
)
def test_the_sdk_raises_on_an_error_event(client: openai.OpenAI, model: str, code: str) -> None:
    received = []
    with pytest.raises(openai.APIError) as raised:
        for chunk in client.chat.completions.create(model=model, messages=user("one two three four"), stream=True):
            received.append(chunk)
    assert received, "the error came before any chunk"
    assert not isinstance(raised.value, openai.APIStatusError)  # the HTTP status was 200
    assert raised.value.code == code


# --- a client that hangs up ----------------------------------------------------------------------


def test_a_client_hang_up_closes_the_upstream_stream(http: httpx.Client, fake: FakeUpstream, marker: str) -> None:
    body = {"model": "fake-long", "messages": user(f"talk a lot {marker}"), "stream": True}
    events = 0
    with http.stream("POST", "/chat/completions", json=body) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            events += line.startswith("data: ")
            if events == 3:
                break
    # Leaving the block closes the connection mid-stream.
    received = fake.one(marker)
    assert received.wait_ended(3) == "disconnected", "the gateway kept reading from the upstream"


def test_the_gateway_still_answers_after_a_hang_up(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model="fake-long", messages=user("again"), stream=True)
    next(iter(stream))
    stream.close()
    answer = client.chat.completions.create(model="fake-ok", messages=user("still there?"))
    assert answer.choices[0].message.content == "Echo: still there?"
