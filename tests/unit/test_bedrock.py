"""The Bedrock adapter against a real bedrock-runtime client, offline.

botocore's Stubber checks every call against the exact Converse parameters expected (so the
request translation is verified, and botocore's own validator and serializer still run) and
validates every canned response against the service model. Streams are real event-stream
frames, encoded here and decoded by botocore's own EventStream, so the adapter sees exactly
what it sees in production, exception events raised as EventStreamError included.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.eventstream import EventStream
from botocore.parsers import EventStreamJSONParser
from botocore.stub import Stubber
from botocore.validate import validate_parameters

from gateway.providers.bedrock import Bedrock, shared_client
from gateway.upstream import UpstreamConnectError, UpstreamHTTPError, UpstreamTimeout
from gateway.wire.chat import shape
from tests.support.servers import free_port

MODEL = "anthropic.claude-3-5-sonnet-20241022-v2:0"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
METRICS = {"latencyMs": 120}
USAGE = {"inputTokens": 12, "outputTokens": 7, "totalTokens": 19}
SIMPLE_BODY = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]}
SIMPLE_REQUEST = {"modelId": MODEL, "messages": [{"role": "user", "content": [{"text": "Hi"}]}]}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
WEATHER_SPEC = {
    "toolSpec": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
    }
}


def make_client(**kwargs: Any) -> Any:
    return boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        **kwargs,
    )


def frame(event: dict[str, Any]) -> bytes:
    """One AWS event-stream message: prelude, string headers, JSON payload, CRCs."""
    ((name, payload),) = event.items()
    kind = "exception" if name.endswith("Exception") else "event"
    headers = {":message-type": kind, f":{kind}-type": name, ":content-type": "application/json"}
    encoded = b"".join(
        bytes([len(k)]) + k.encode() + b"\x07" + struct.pack(">H", len(v)) + v.encode() for k, v in headers.items()
    )
    body = json.dumps(payload).encode()
    prelude = struct.pack(">II", 12 + len(encoded) + len(body) + 4, len(encoded))
    message = prelude + struct.pack(">I", binascii.crc32(prelude)) + encoded + body
    return message + struct.pack(">I", binascii.crc32(message))


class RawStream:
    """Stands in for urllib3's response under EventStream: frames in uneven pieces, optionally
    slow, or hanging after `hang_after` frames until closed (as a socket read would)."""

    def __init__(self, frames: list[bytes], hang_after: int | None = None, delay: float = 0.0) -> None:
        self.frames = frames
        self.hang_after = hang_after
        self.delay = delay
        self.closed = threading.Event()

    def stream(self) -> Iterator[bytes]:
        for i, data in enumerate(self.frames):
            if i == self.hang_after:
                self.closed.wait(10)
                return
            for start in range(0, len(data), 13):
                if self.delay:
                    time.sleep(self.delay)
                yield data[start : start + 13]

    def close(self) -> None:
        self.closed.set()


class Harness:
    """A stubbed client; ConverseStream responses get a real EventStream over RawStream frames."""

    def __init__(self) -> None:
        self.client = make_client()
        self.stubber = Stubber(self.client)
        self.stubber.activate()
        self.raw_streams: list[RawStream] = []
        output = self.client.meta.service_model.operation_model("ConverseStream").output_shape
        self.stream_shape = output.members["stream"]
        # The Stubber insists `stream` is a dict; swap the real EventStream in once it has answered.
        self.client.meta.events.register("after-call.bedrock-runtime.ConverseStream", self._attach)
        self.adapter = Bedrock("us-east-1", "Amazon Bedrock", client=self.client)

    def _attach(self, parsed: dict[str, Any], **_: Any) -> None:
        if "stream" in parsed:
            raw = self.raw_streams.pop(0)
            parsed["stream"] = EventStream(raw, self.stream_shape, EventStreamJSONParser(), "ConverseStream")

    def converse(self, expected: dict[str, Any] | None, response: dict[str, Any]) -> None:
        self.stubber.add_response("converse", response, expected)

    def converse_stream(self, expected: dict[str, Any] | None, events: list[dict[str, Any]], **raw: Any) -> RawStream:
        for event in events:
            validate_parameters(event, self.stream_shape)  # each event as botocore's model defines it
        stream = RawStream([frame(e) for e in events], **raw)
        self.raw_streams.append(stream)
        self.stubber.add_response("converse_stream", {"stream": {}}, expected)
        return stream


@pytest.fixture
def bedrock() -> Iterator[Harness]:
    harness = Harness()
    yield harness
    harness.stubber.assert_no_pending_responses()


def reply(content: list[dict[str, Any]], stop: str = "end_turn", usage: dict[str, int] = USAGE) -> dict:
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop,
        "usage": usage,
        "metrics": METRICS,
    }


async def collect(stream: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    return [chunk async for chunk in stream]


def text_events(*pieces: str, stop: str = "end_turn", usage: dict[str, int] = USAGE) -> list[dict]:
    return [
        {"messageStart": {"role": "assistant"}},
        *({"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"text": p}}} for p in pieces),
        {"contentBlockStop": {"contentBlockIndex": 0}},
        {"messageStop": {"stopReason": stop}},
        {"metadata": {"usage": usage, "metrics": METRICS}},
    ]


# --- whole answers ---------------------------------------------------------------------------


def test_complete_translates_the_request_and_the_answer(bedrock: Harness) -> None:
    body = {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in English."}]},
            {"role": "user", "content": "Hello"},
            {"role": "user", "content": [{"type": "text", "text": "Who are you?"}]},
            {"role": "assistant", "content": "A model."},
            {"role": "user", "content": "Say more."},
        ],
        "max_completion_tokens": 100,
        "max_tokens": 5,  # max_completion_tokens wins, as in OpenAI's API
        "temperature": 0.3,
        "top_p": 0.9,
        "stop": ["END", "STOP"],
        "user": "ignored-by-bedrock",
        "additionalModelRequestFields": {"top_k": 50},
    }
    expected = {
        "modelId": MODEL,
        "system": [{"text": "Be brief."}, {"text": "Answer in English."}],
        "messages": [
            {"role": "user", "content": [{"text": "Hello"}, {"text": "Who are you?"}]},
            {"role": "assistant", "content": [{"text": "A model."}]},
            {"role": "user", "content": [{"text": "Say more."}]},
        ],
        "inferenceConfig": {"maxTokens": 100, "temperature": 0.3, "topP": 0.9, "stopSequences": ["END", "STOP"]},
        "additionalModelRequestFields": {"top_k": 50},
    }
    bedrock.converse(expected, reply([{"text": "I am "}, {"text": "Claude."}]))

    result = asyncio.run(bedrock.adapter.complete(body))

    assert result["object"] == "chat.completion"
    assert result["model"] == MODEL
    assert result["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "I am Claude.", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert result["usage"] == {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}
    shaped = shape.whole(result, id="chatcmpl-test", model="claude", provider="bedrock", prompt_estimate=1)
    assert shaped["usage"]["prompt_tokens"] == 12  # the gateway keeps Bedrock's counts


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
    ],
)
def test_stop_reasons(bedrock: Harness, stop_reason: str, finish: str) -> None:
    bedrock.converse(SIMPLE_REQUEST, reply([{"text": "x"}], stop=stop_reason))
    assert asyncio.run(bedrock.adapter.complete(SIMPLE_BODY))["choices"][0]["finish_reason"] == finish


def test_usage_counts_cache_reads_and_writes_as_prompt_tokens(bedrock: Harness) -> None:
    usage = {
        "inputTokens": 10,
        "outputTokens": 5,
        "totalTokens": 125,
        "cacheReadInputTokens": 90,
        "cacheWriteInputTokens": 20,
    }
    bedrock.converse(SIMPLE_REQUEST, reply([{"text": "x"}], usage=usage))
    assert asyncio.run(bedrock.adapter.complete(SIMPLE_BODY))["usage"] == {
        "prompt_tokens": 120,
        "completion_tokens": 5,
        "total_tokens": 125,
        "prompt_tokens_details": {"cached_tokens": 90, "cache_write_tokens": 20},
    }


# --- tools -----------------------------------------------------------------------------------

HISTORY = [
    {"role": "user", "content": "Weather in Paris and Rome?"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "tooluse_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            },
            {"id": "tooluse_2", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}},
        ],
    },
    {"role": "tool", "tool_call_id": "tooluse_1", "content": "18C and sunny"},
    {"role": "tool", "tool_call_id": "tooluse_2", "content": {"city": "Rome", "celsius": 24}},
]
HISTORY_TURNS = [
    {"role": "user", "content": [{"text": "Weather in Paris and Rome?"}]},
    {
        "role": "assistant",
        "content": [
            {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}},
            {"toolUse": {"toolUseId": "tooluse_2", "name": "get_weather", "input": {}}},
        ],
    },
    {
        "role": "user",  # both results in one user turn, as Converse requires
        "content": [
            {"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": "18C and sunny"}]}},
            {"toolResult": {"toolUseId": "tooluse_2", "content": [{"json": {"city": "Rome", "celsius": 24}}]}},
        ],
    },
]


@pytest.mark.parametrize(
    ("tool_choice", "converse_choice"),
    [
        ("auto", {"auto": {}}),
        ("required", {"any": {}}),
        ({"type": "function", "function": {"name": "get_weather"}}, {"tool": {"name": "get_weather"}}),
    ],
)
def test_tools_history_and_tool_calls(bedrock: Harness, tool_choice: Any, converse_choice: dict) -> None:
    body = {"model": MODEL, "messages": HISTORY, "tools": [WEATHER_TOOL], "tool_choice": tool_choice}
    expected = {
        "modelId": MODEL,
        "messages": HISTORY_TURNS,
        "toolConfig": {"tools": [WEATHER_SPEC], "toolChoice": converse_choice},
    }
    answer = [
        {"text": "Checking."},
        {"toolUse": {"toolUseId": "tooluse_3", "name": "get_weather", "input": {"city": "Oslo"}}},
    ]
    bedrock.converse(expected, reply(answer, stop="tool_use"))

    choice = asyncio.run(bedrock.adapter.complete(body))["choices"][0]

    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Checking."
    assert choice["message"]["tool_calls"] == [
        {"id": "tooluse_3", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}
    ]


def test_tool_choice_none_drops_the_tools_unless_the_history_uses_them(bedrock: Harness) -> None:
    plain = {**SIMPLE_BODY, "tools": [WEATHER_TOOL], "tool_choice": "none"}
    bedrock.converse(SIMPLE_REQUEST, reply([{"text": "x"}]))
    asyncio.run(bedrock.adapter.complete(plain))

    with_history = {"model": MODEL, "messages": HISTORY, "tools": [WEATHER_TOOL], "tool_choice": "none"}
    expected = {"modelId": MODEL, "messages": HISTORY_TURNS, "toolConfig": {"tools": [WEATHER_SPEC]}}
    bedrock.converse(expected, reply([{"text": "x"}]))
    asyncio.run(bedrock.adapter.complete(with_history))


# --- images ----------------------------------------------------------------------------------


def test_data_url_images_become_image_blocks(bedrock: Harness) -> None:
    url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    webp = "data:image/webp;base64," + base64.b64encode(b"RIFF0000WEBP").decode()
    body = {
        "model": MODEL,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": url, "detail": "high"}},
                    {"type": "image_url", "image_url": {"url": webp}},
                ],
            }
        ],
    }
    expected = {
        "modelId": MODEL,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"text": "What is this?"},
                    {"image": {"format": "png", "source": {"bytes": PNG}}},
                    {"image": {"format": "webp", "source": {"bytes": b"RIFF0000WEBP"}}},
                ],
            }
        ],
    }
    bedrock.converse(expected, reply([{"text": "A PNG header."}]))
    assert asyncio.run(bedrock.adapter.complete(body))["choices"][0]["message"]["content"] == "A PNG header."


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("https://example.com/cat.png", "data: URL"),
        ("data:image/bmp;base64,AAAA", "not supported"),
        ("data:image/png;base64,not base64!", "not valid base64"),
    ],
)
def test_unusable_images_are_refused_as_the_callers_fault(bedrock: Harness, url: str, complaint: str) -> None:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}],
    }
    for call in (bedrock.adapter.complete(body), anext(bedrock.adapter.stream(body))):
        with pytest.raises(UpstreamHTTPError) as caught:
            asyncio.run(call)
        assert caught.value.status == 400 and caught.value.client_fault and not caught.value.retryable
        assert complaint in caught.value.message


def test_botocore_parameter_validation_is_the_callers_fault() -> None:
    # botocore checks the request against the model before any I/O (the endpoint is loopback anyway)
    adapter = Bedrock("us-east-1", "Amazon Bedrock", client=make_client(endpoint_url="http://127.0.0.1:9"))
    with pytest.raises(UpstreamHTTPError) as caught:
        asyncio.run(adapter.complete({**SIMPLE_BODY, "max_tokens": 0}))
    assert caught.value.status == 400 and caught.value.client_fault and "maxTokens" in caught.value.message


# --- streams ---------------------------------------------------------------------------------


def test_stream_text(bedrock: Harness) -> None:
    body = {**SIMPLE_BODY, "stream": True, "stream_options": {"include_usage": True}, "max_tokens": 64}
    expected = {**SIMPLE_REQUEST, "inferenceConfig": {"maxTokens": 64}}
    raw = bedrock.converse_stream(expected, text_events("Hel", "lo", " there"))

    chunks = asyncio.run(collect(bedrock.adapter.stream(body)))

    assert [c["choices"][0]["delta"] if c["choices"] else c["usage"] for c in chunks] == [
        {"role": "assistant", "content": ""},
        {"content": "Hel"},
        {"content": "lo"},
        {"content": " there"},
        {},
        {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
    ]
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]] == [None] * 4 + ["stop"]
    assert chunks[-1]["choices"] == []
    assert {(c["id"], c["object"], c["created"], c["model"]) for c in chunks} == {
        (chunks[0]["id"], "chat.completion.chunk", chunks[0]["created"], MODEL)
    }
    assert raw.closed.is_set()


@pytest.mark.parametrize(("stop_reason", "finish"), [("max_tokens", "length"), ("content_filtered", "content_filter")])
def test_stream_stop_reasons(bedrock: Harness, stop_reason: str, finish: str) -> None:
    bedrock.converse_stream(SIMPLE_REQUEST, text_events("x", stop=stop_reason))
    chunks = asyncio.run(collect(bedrock.adapter.stream(SIMPLE_BODY)))
    assert chunks[-2]["choices"][0]["finish_reason"] == finish


def test_stream_tool_calls_reassemble_exactly(bedrock: Harness) -> None:
    body = {**SIMPLE_BODY, "tools": [WEATHER_TOOL], "tool_choice": "required"}
    expected = {**SIMPLE_REQUEST, "toolConfig": {"tools": [WEATHER_SPEC], "toolChoice": {"any": {}}}}
    first = ['{"ci', 'ty": "Par', "is", '", "note": "a \\"quoted\\" ', 'é"}']
    second = ['{"city"', ': "Rome"}']
    events = [
        {"messageStart": {"role": "assistant"}},
        {"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"text": "Let me check."}}},
        {"contentBlockStop": {"contentBlockIndex": 0}},
        {
            "contentBlockStart": {
                "contentBlockIndex": 1,
                "start": {"toolUse": {"toolUseId": "t1", "name": "get_weather"}},
            }
        },
        *({"contentBlockDelta": {"contentBlockIndex": 1, "delta": {"toolUse": {"input": f}}}} for f in first),
        {"contentBlockStop": {"contentBlockIndex": 1}},
        {
            "contentBlockStart": {
                "contentBlockIndex": 2,
                "start": {"toolUse": {"toolUseId": "t2", "name": "get_weather"}},
            }
        },
        *({"contentBlockDelta": {"contentBlockIndex": 2, "delta": {"toolUse": {"input": f}}}} for f in second),
        {"contentBlockStop": {"contentBlockIndex": 2}},
        {"contentBlockStart": {"contentBlockIndex": 3, "start": {"toolUse": {"toolUseId": "t3", "name": "now"}}}},
        {"contentBlockStop": {"contentBlockIndex": 3}},
        {"messageStop": {"stopReason": "tool_use"}},
        {"metadata": {"usage": USAGE, "metrics": METRICS}},
    ]
    bedrock.converse_stream(expected, events)

    chunks = asyncio.run(collect(bedrock.adapter.stream(body)))

    calls: dict[int, dict[str, Any]] = {}  # reassembled the way the openai SDK does it
    for chunk in chunks:
        for choice in chunk["choices"]:
            for delta in choice["delta"].get("tool_calls", ()):
                call = calls.setdefault(delta["index"], {"id": None, "name": None, "arguments": ""})
                if "id" in delta:
                    assert call["id"] is None, "the id comes once, first"
                    call["id"], call["name"] = delta["id"], delta["function"]["name"]
                    assert delta["type"] == "function"
                call["arguments"] += delta["function"].get("arguments", "")
    assert calls == {
        0: {"id": "t1", "name": "get_weather", "arguments": "".join(first)},
        1: {"id": "t2", "name": "get_weather", "arguments": "".join(second)},
        2: {"id": "t3", "name": "now", "arguments": "{}"},  # no arguments still parses as JSON
    }
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris", "note": 'a "quoted" é'}
    assert chunks[1]["choices"][0]["delta"] == {"content": "Let me check."}
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"]["total_tokens"] == 19


def test_stream_usage_counts_cache_reads(bedrock: Harness) -> None:
    usage = {"inputTokens": 3, "outputTokens": 2, "totalTokens": 45, "cacheReadInputTokens": 40}
    bedrock.converse_stream(SIMPLE_REQUEST, text_events("x", usage=usage))
    chunks = asyncio.run(collect(bedrock.adapter.stream(SIMPLE_BODY)))
    assert chunks[-1] == {
        **{k: chunks[0][k] for k in ("id", "object", "created", "model")},
        "choices": [],
        "usage": {
            "prompt_tokens": 43,
            "completion_tokens": 2,
            "total_tokens": 45,
            "prompt_tokens_details": {"cached_tokens": 40, "cache_write_tokens": 0},
        },
    }


def test_closing_the_stream_early_closes_the_event_stream(bedrock: Harness) -> None:
    raw = bedrock.converse_stream(SIMPLE_REQUEST, text_events("a", "b", "c"))

    async def hang_up() -> None:
        stream = bedrock.adapter.stream(SIMPLE_BODY)
        assert (await anext(stream))["choices"][0]["delta"]["role"] == "assistant"
        await stream.aclose()

    asyncio.run(hang_up())
    assert raw.closed.is_set()


def test_cancelling_while_the_model_is_silent_closes_at_once(bedrock: Harness) -> None:
    raw = bedrock.converse_stream(SIMPLE_REQUEST, text_events("a"), hang_after=1)

    async def give_up() -> float:
        stream = bedrock.adapter.stream(SIMPLE_BODY)
        await anext(stream)
        started = time.perf_counter()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(stream), 0.2)
        return time.perf_counter() - started

    assert asyncio.run(give_up()) < 2
    assert raw.closed.wait(2)


def test_reading_the_stream_never_blocks_the_event_loop(bedrock: Harness) -> None:
    bedrock.converse_stream(SIMPLE_REQUEST, text_events("a", "b", "c"), delay=0.01)

    async def race() -> int:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.005)

        task = asyncio.create_task(ticker())
        await collect(bedrock.adapter.stream(SIMPLE_BODY))
        done.set()
        await task
        return ticks

    assert asyncio.run(race()) > 10  # the frames take ~0.3 s to arrive; the loop kept turning


def test_a_stream_cut_before_message_stop_is_an_error(bedrock: Harness) -> None:
    bedrock.converse_stream(SIMPLE_REQUEST, text_events("a")[:2])
    with pytest.raises(UpstreamConnectError):
        asyncio.run(collect(bedrock.adapter.stream(SIMPLE_BODY)))


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "http_status", "status", "retryable"),
    [
        ("ThrottlingException", 429, 429, True),
        ("ValidationException", 400, 400, False),
        ("AccessDeniedException", 403, 403, False),
        ("ResourceNotFoundException", 404, 404, False),
        ("ModelTimeoutException", 408, 504, True),
        ("ModelNotReadyException", 429, 503, True),
        ("ServiceUnavailableException", 503, 503, True),
        ("InternalServerException", 500, 500, True),
    ],
)
def test_client_errors(bedrock: Harness, code: str, http_status: int, status: int, retryable: bool) -> None:
    message = "Too many requests, please wait before trying again."
    bedrock.stubber.add_client_error("converse", code, message, http_status, expected_params=SIMPLE_REQUEST)
    bedrock.stubber.add_client_error("converse_stream", code, message, http_status, expected_params=SIMPLE_REQUEST)
    for call in (bedrock.adapter.complete(SIMPLE_BODY), anext(bedrock.adapter.stream(SIMPLE_BODY))):
        with pytest.raises(UpstreamHTTPError) as caught:
            asyncio.run(call)  # a stream fails on its first __anext__, so the router can fall back
        error = caught.value
        assert (error.status, error.retryable) == (status, retryable)
        assert error.client_fault == (code == "ValidationException")
        assert code in error.message and message in error.message


@pytest.mark.parametrize(
    ("event", "status"),
    [
        ("modelStreamErrorException", 502),
        ("throttlingException", 429),
        ("validationException", 400),
        ("serviceUnavailableException", 503),
        ("internalServerException", 500),
    ],
)
def test_exception_events_mid_stream(bedrock: Harness, event: str, status: int) -> None:
    events = [*text_events("partial")[:2], {event: {"message": "The model stopped."}}]
    raw = bedrock.converse_stream(SIMPLE_REQUEST, events)
    received: list[dict[str, Any]] = []

    async def consume() -> None:
        async for chunk in bedrock.adapter.stream(SIMPLE_BODY):
            received.append(chunk)

    with pytest.raises(UpstreamHTTPError) as caught:
        asyncio.run(consume())
    assert [c["choices"][0]["delta"] for c in received] == [
        {"role": "assistant", "content": ""},
        {"content": "partial"},
    ]
    assert caught.value.status == status and "The model stopped." in caught.value.message
    assert raw.closed.is_set()


def test_an_exception_event_before_any_output_fails_the_first_anext(bedrock: Harness) -> None:
    bedrock.converse_stream(SIMPLE_REQUEST, [{"throttlingException": {"message": "Slow down."}}])
    with pytest.raises(UpstreamHTTPError) as caught:
        asyncio.run(anext(bedrock.adapter.stream(SIMPLE_BODY)))
    assert caught.value.status == 429 and caught.value.retryable


NO_RETRIES = Config(retries={"total_max_attempts": 1}, connect_timeout=1, read_timeout=0.3)


def test_connection_refused_is_a_connect_error() -> None:
    port = free_port()  # nothing listens there
    client = make_client(endpoint_url=f"http://127.0.0.1:{port}", config=NO_RETRIES)
    adapter = Bedrock("us-east-1", "Amazon Bedrock", client=client)
    for call in (adapter.complete(SIMPLE_BODY), anext(adapter.stream(SIMPLE_BODY))):
        with pytest.raises(UpstreamConnectError):
            asyncio.run(call)


def test_a_silent_endpoint_is_a_timeout() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()  # accepts connections, never answers
        client = make_client(endpoint_url=f"http://127.0.0.1:{server.getsockname()[1]}", config=NO_RETRIES)
        adapter = Bedrock("us-east-1", "Amazon Bedrock", client=client)
        with pytest.raises(UpstreamTimeout):
            asyncio.run(adapter.complete(SIMPLE_BODY))


def test_one_client_per_region_per_process() -> None:
    client = shared_client("eu-west-3")
    assert shared_client("eu-west-3") is client
    assert client.meta.region_name == "eu-west-3"
    assert client.meta.config.retries["total_max_attempts"] == 1
