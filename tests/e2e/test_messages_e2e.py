"""POST /v1/messages and /v1/messages/count_tokens end to end: the official `anthropic` SDK against the real
gateway, the gateway against the fake OpenAI upstream and a fake Anthropic upstream (tests/support/fake_upstream.py),
both on loopback: every catalog model answers in Anthropic's shape, and a provider that speaks Anthropic's
protocol gets the request natively.

Every body is parsed into the SDK's own `Message` type with strict validation and its keys compared with
Anthropic's published ones; every stream event is parsed into `RawMessageStreamEvent`, and the sequence is
checked for the documented order (message_start, blocks opened, filled and closed one at a time by index,
message_delta, message_stop; `error` last after a failure).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from anthropic.types.shared import ErrorResponse
from pydantic import TypeAdapter

from tests.support.fake_upstream import (
    API_KEY,
    CACHED_TOKENS,
    PROMPT_TOKENS,
    REASONING,
    SIGNATURE,
    TEXT,
    THINKING,
    TIME_JSON,
    TOOL_ARGUMENTS,
    WEATHER_JSON,
    FakeUpstream,
    answer_text,
)
from tests.support.kit import balance, month_counters, named_events, user, wait_settled
from tests.support.stack import Stack, applied, ensure_tables, reset_provider_health

STREAM_EVENT = TypeAdapter(RawMessageStreamEvent)
MESSAGE_KEYS = {"id", "type", "role", "model", "content", "stop_reason", "stop_sequence", "usage"}
USAGE_KEYS = {"input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"}
BLOCK_KEYS = {
    "text": {"type", "text"},
    "tool_use": {"type", "id", "name", "input"},
    "thinking": {"type", "thinking", "signature"},
    "redacted_thinking": {"type", "data"},
}
DELTAS = {"text": ("text_delta",), "tool_use": ("input_json_delta",), "thinking": ("thinking_delta", "signature_delta")}
NATIVE_PROVIDERS = ("msg-anthropic", "msg-anthropic-errors")
# USD per million tokens, as the catalog below prices the fake Claude models.
CLAUDE_PRICE = {"input": "3", "output": "15", "cache_read": "0.3", "cache_write": "3.75"}
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
}
PDF = "JVBERi0xLjQKJcOkw7zDtsOfCg=="
MakeKey = Callable[..., tuple[str, Any]]


# --- the stack: the session's gateway, with fake Claude models on a fake Anthropic upstream --------------


def _claude(model_id: str, upstream: str, provider: str = "msg-anthropic") -> dict[str, Any]:
    return {
        "id": model_id,
        "owned_by": "fake-anthropic",
        "created": 1767225600,
        "context_length": 200_000,
        "max_output_tokens": 8192,
        "pricing": CLAUDE_PRICE,
        "offerings": [{"provider": provider, "model": upstream}],
        "supports_tools": True,
        "input_modalities": ["text", "image", "file"],
    }


def messages_catalog() -> dict[str, Any]:
    def provider(name: str) -> dict[str, Any]:
        return {
            "name": name,
            "protocol": "anthropic",
            "base_url_env": "FAKE_ANTHROPIC_BASE_URL",
            "key": "FAKE_ANTHROPIC_KEY",
        }

    return {
        "providers": {p: provider(f"Fake Anthropic ({p})") for p in NATIVE_PROVIDERS},
        "models": [
            _claude("claude-fake", "claude-text"),
            _claude("claude-fake-tools", "claude-tools"),
            _claude("claude-fake-thinking", "claude-thinking"),
            _claude("claude-fake-thinking-tools", "claude-thinking-tools"),
            _claude("claude-fake-stop", "claude-stop-sequence"),
            _claude("claude-fake-cache", "claude-cache"),
            _claude("claude-fake-midstream", "claude-midstream-error", "msg-anthropic-errors"),
            # The fake OpenAI upstream's `reasoning` answer, on its own provider of the session's catalog.
            {**_claude("msg-reasoning", "reasoning", "fake"), "pricing": {"input": "1", "output": "2"}},
        ],
    }


@dataclass
class Messages:
    stack: Stack
    native: FakeUpstream

    @property
    def root(self) -> str:
        """The base URL Anthropic's SDKs take: they add /v1/messages themselves."""
        return self.stack.gateway.url


@pytest.fixture(scope="module")
def messages_stack(e2e_env: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Messages]:
    native = FakeUpstream().start()
    path = Path(tmp_path_factory.mktemp("messages")) / "messages-catalog.json"
    path.write_text(json.dumps(messages_catalog(), indent=1))
    env = {
        **e2e_env.env,
        "GATEWAY_CATALOG_EXTRA": e2e_env.env["GATEWAY_CATALOG_EXTRA"] + os.pathsep + str(path),
        "FAKE_ANTHROPIC_BASE_URL": native.base_url,
        "FAKE_ANTHROPIC_KEY": API_KEY,
    }
    try:
        with applied(env):
            ensure_tables(e2e_env)
            reset_provider_health(NATIVE_PROVIDERS, everything=True)
            yield Messages(e2e_env, native)
    finally:
        native.stop()


@pytest.fixture
def stack(messages_stack: Messages) -> Messages:
    reset_provider_health((*messages_stack.stack.providers, *NATIVE_PROVIDERS))
    return messages_stack


@pytest.fixture(scope="module")
def key(messages_stack: Messages) -> str:
    from tests.support.keys import make_key

    return make_key(name="messages e2e", free_requests=0)[0]


@pytest.fixture(scope="module")
def _sdk(messages_stack: Messages, key: str) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=messages_stack.root, api_key=key, max_retries=0, timeout=15) as sdk:
        yield sdk


@pytest.fixture
def claude(stack: Messages, _sdk: anthropic.Anthropic) -> anthropic.Anthropic:
    """The official anthropic SDK (x-api-key), with the module's key and no retries."""
    return _sdk


@pytest.fixture
def raw(stack: Messages, key: str) -> Iterator[httpx.Client]:
    headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
    with httpx.Client(base_url=stack.root, headers=headers, timeout=15, trust_env=False) as client:
        yield client


@pytest.fixture
def native(stack: Messages) -> FakeUpstream:
    return stack.native


# --- checks against Anthropic's published shapes -----------------------------------------------------


def check_message(body: dict[str, Any]) -> Message:
    """A whole answer as the SDK's strict type reads it, with exactly Anthropic's keys (and our `usage.cost`)."""
    message = Message.model_validate(body, strict=True)
    assert set(body) == MESSAGE_KEYS, body
    assert body["id"].startswith("msg_") and body["type"] == "message" and body["role"] == "assistant"
    assert set(body["usage"]) - {"cost"} == USAGE_KEYS, body["usage"]
    assert isinstance(body["usage"]["cost"], float | int)
    for block in body["content"]:
        assert set(block) == BLOCK_KEYS[block["type"]], block
    assert body["stop_reason"] in ("end_turn", "max_tokens", "stop_sequence", "tool_use", "refusal")
    assert (body["stop_sequence"] is not None) == (body["stop_reason"] == "stop_sequence")
    return message


def check_stream(text: str, error: bool = False) -> dict[str, Any]:
    """The events in Anthropic's documented order and shapes; returns what a client assembles from them."""
    events = named_events(text)
    for name, data in events:
        if name == "ping":
            assert data == {"type": "ping"}
        elif name == "error":
            ErrorResponse.model_validate(data, strict=True)
            assert set(data) == {"type", "error"} and set(data["error"]) == {"type", "message"}, data
        else:
            STREAM_EVENT.validate_python(data, strict=True)
    names = [name for name, _ in events]
    assert names[0] == "message_start", names
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None and start["id"].startswith("msg_")
    assert set(start["usage"]) == USAGE_KEYS
    if error:
        assert names[-1] == "error" and names.count("error") == 1, names
        assert "message_stop" not in names
        events = events[:-1]
    else:
        assert names[-2:] == ["message_delta", "message_stop"], names
        assert names.count("message_delta") == 1
    blocks: list[dict[str, Any]] = []
    open_index: int | None = None
    json_input: dict[int, str] = {}
    for name, data in events[1:]:
        if name == "content_block_start":
            assert open_index is None and data["index"] == len(blocks), (names, data)
            block = dict(data["content_block"])
            assert set(block) == BLOCK_KEYS[block["type"]] | ({"cache_control"} & set(block)), block
            blocks.append(block)
            open_index = data["index"]
        elif name == "content_block_delta":
            assert data["index"] == open_index, (names, data)
            block, delta = blocks[open_index], data["delta"]
            assert delta["type"] in DELTAS[block["type"]], (block, delta)
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            elif delta["type"] == "thinking_delta":
                block["thinking"] += delta["thinking"]
            elif delta["type"] == "signature_delta":
                block["signature"] = delta["signature"]
            else:
                json_input[open_index] = json_input.get(open_index, "") + delta["partial_json"]
        elif name == "content_block_stop":
            assert data["index"] == open_index, (names, data)
            open_index = None
        elif name == "message_delta":
            assert open_index is None, "every block is closed before message_delta"
            assert set(data["usage"]) - {"cost"} == USAGE_KEYS, data
        else:
            assert name in ("ping", "message_stop"), name
    for index, text_input in json_input.items():
        blocks[index]["json"] = text_input
        blocks[index]["input"] = json.loads(text_input)
    end = events[-2][1] if not error else None
    return {"blocks": blocks, "start": start, "end": end, "names": names}


def check_error(response: httpx.Response, status: int, kind: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    ErrorResponse.model_validate(body, strict=True)
    assert set(body) == {"type", "error"} and body["type"] == "error", body
    assert set(body["error"]) == {"type", "message"} and body["error"]["type"] == kind, body
    assert response.headers["x-request-id"]
    return body["error"]["message"]


# --- account reads -------------------------------------------------------------------------------------


# --- whole answers -------------------------------------------------------------------------------------


def test_whole_answer_from_an_openai_upstream(
    claude: anthropic.Anthropic, fake: FakeUpstream, marker: str, raw: httpx.Client
) -> None:
    response = claude.messages.with_raw_response.create(
        model="fake-ok", max_tokens=100, messages=user(f"Hello {marker}"), system="Be brief."
    )
    message = response.parse()
    body = json.loads(response.http_response.text)
    check_message(body)
    expected = answer_text({"messages": [{"role": "user", "content": f"Hello {marker}"}]})
    assert [b.type for b in message.content] == ["text"] and message.content[0].text == expected
    assert message.stop_reason == "end_turn" and message.stop_sequence is None and message.model == "fake-ok"
    assert message.usage.input_tokens == PROMPT_TOKENS and message.usage.output_tokens > 0
    assert message.usage.cache_read_input_tokens == 0 and message.usage.cache_creation_input_tokens == 0
    assert Decimal(response.headers["x-gateway-cost"]) == Decimal(str(body["usage"]["cost"])) > 0
    assert response.headers["request-id"] == response.headers["x-request-id"]
    sent = fake.one(marker).body
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": f"Hello {marker}"},
    ]
    assert sent["max_tokens"] == 100 and "native_protocol" not in sent


def test_whole_answer_from_a_native_upstream(claude: anthropic.Anthropic, native: FakeUpstream, marker: str) -> None:
    response = claude.messages.with_raw_response.create(
        model="claude-fake",
        max_tokens=300,
        messages=user(marker),
        metadata={"user_id": "u-7"},
        extra_body={"temperature": 0.5},  # gone from this SDK's signature; older clients still send it
    )
    message = check_message(json.loads(response.http_response.text))
    assert message.content[0].text == TEXT and message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (25, 15)
    assert native.requests[-1] == {
        "model": "claude-text",
        "max_tokens": 300,
        "messages": [{"role": "user", "content": [{"type": "text", "text": marker}]}],
        "temperature": 0.5,
        "metadata": {"user_id": "u-7"},
    }


def test_reasoning_from_an_openai_upstream_is_a_thinking_block(claude: anthropic.Anthropic, marker: str) -> None:
    response = claude.messages.with_raw_response.create(model="msg-reasoning", max_tokens=100, messages=user(marker))
    message = check_message(json.loads(response.http_response.text))
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert message.content[0].thinking == "".join(REASONING) and message.content[0].signature == ""

    with claude.messages.stream(model="msg-reasoning", max_tokens=100, messages=user(marker)) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].thinking == "".join(REASONING)


def test_stop_sequence_and_cache_usage_from_a_native_upstream(claude: anthropic.Anthropic, marker: str) -> None:
    stopped = claude.messages.create(
        model="claude-fake-stop", max_tokens=50, messages=user(marker), stop_sequences=["END", "STOP"]
    )
    assert (stopped.stop_reason, stopped.stop_sequence) == ("stop_sequence", "END")
    with claude.messages.stream(
        model="claude-fake-stop", max_tokens=50, messages=user(marker), stop_sequences=["END"]
    ) as stream:
        final = stream.get_final_message()
    assert (final.stop_reason, final.stop_sequence) == ("stop_sequence", "END")

    cached = claude.messages.with_raw_response.create(model="claude-fake-cache", max_tokens=50, messages=user(marker))
    body = json.loads(cached.http_response.text)
    usage = check_message(body).usage
    assert (usage.input_tokens, usage.cache_creation_input_tokens, usage.cache_read_input_tokens) == (12, 100, 2000)
    assert usage.output_tokens == 30
    price = {k: Decimal(v) for k, v in CLAUDE_PRICE.items()}
    expected = (
        12 * price["input"] + 100 * price["cache_write"] + 2000 * price["cache_read"] + 30 * price["output"]
    ) / (Decimal(1_000_000))
    assert Decimal(cached.headers["x-gateway-cost"]) == expected == Decimal(str(body["usage"]["cost"]))


# --- streams -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["fake-ok", "claude-fake"])
def test_streamed_text(claude: anthropic.Anthropic, raw: httpx.Client, marker: str, model: str) -> None:
    body = {"model": model, "max_tokens": 100, "messages": user(f"stream {marker}"), "stream": True}
    response = raw.post("/v1/messages", json=body)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    got = check_stream(response.text)
    text = TEXT if model == "claude-fake" else answer_text({"messages": user(f"stream {marker}")})
    assert [b["type"] for b in got["blocks"]] == ["text"] and got["blocks"][0]["text"] == text
    assert sum(1 for name in got["names"] if name == "content_block_delta") >= 3  # forwarded in pieces
    end = got["end"]
    assert end["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert end["usage"]["input_tokens"] == (25 if model == "claude-fake" else PROMPT_TOKENS)
    assert end["usage"]["cost"] > 0

    with claude.messages.stream(model=model, max_tokens=100, messages=user(f"stream {marker}")) as stream:
        assembled = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert assembled == final.content[0].text == text
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0


@pytest.mark.parametrize("model", ["fake-tools", "claude-fake-tools"])
def test_streamed_tool_use(claude: anthropic.Anthropic, raw: httpx.Client, marker: str, model: str) -> None:
    body = {
        "model": model,
        "max_tokens": 200,
        "messages": user(f"weather? {marker}"),
        "tools": [WEATHER_TOOL, {**WEATHER_TOOL, "name": "get_time"}],
        "stream": True,
    }
    got = check_stream(raw.post("/v1/messages", json=body).text)
    assert got["end"]["delta"]["stop_reason"] == "tool_use"
    tools = [b for b in got["blocks"] if b["type"] == "tool_use"]
    if model == "claude-fake-tools":
        assert [b["type"] for b in got["blocks"]] == ["text", "tool_use", "tool_use"]
        assert [(b["id"], b["name"]) for b in tools] == [
            ("toolu_01Weather", "get_weather"),
            ("toolu_02Time", "get_time"),
        ]
        assert tools[0]["json"] == WEATHER_JSON  # the fragments, byte for byte
    else:
        assert [(b["id"], b["name"]) for b in tools] == [("call_fake_1", "get_weather")]
        assert tools[0]["json"] == "".join(TOOL_ARGUMENTS) and tools[0]["input"] == {"city": "Paris"}

    body.pop("stream")
    with claude.messages.stream(**body) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert [b.input for b in final.content if b.type == "tool_use"] == [b["input"] for b in tools]


def test_streamed_thinking_from_a_native_upstream(claude: anthropic.Anthropic, raw: httpx.Client, marker: str) -> None:
    body = {
        "model": "claude-fake-thinking",
        "max_tokens": 2000,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": user(marker),
    }
    got = check_stream(raw.post("/v1/messages", json={**body, "stream": True}).text)
    assert [b["type"] for b in got["blocks"]] == ["thinking", "redacted_thinking", "text"]
    assert got["blocks"][0]["thinking"] == THINKING and got["blocks"][0]["signature"] == SIGNATURE
    whole = check_message(json.loads(claude.messages.with_raw_response.create(**body).http_response.text))
    assert [b.type for b in whole.content] == ["thinking", "redacted_thinking", "text"]
    assert whole.content[0].signature == SIGNATURE


# --- tools, round trip ---------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["fake-tools", "claude-fake-tools"])
def test_tools_round_trip(
    claude: anthropic.Anthropic, fake: FakeUpstream, native: FakeUpstream, marker: str, model: str
) -> None:
    """tool_use out, tool_result back in: the second turn reaches the upstream as its protocol writes it."""
    tools = [WEATHER_TOOL]
    question = user(f"Weather in Paris? {marker}")
    first = claude.messages.create(model=model, max_tokens=200, messages=question, tools=tools)
    assert first.stop_reason == "tool_use"
    results = [
        {"type": "tool_result", "tool_use_id": b.id, "content": "18 degrees", "is_error": False}
        for b in first.content
        if b.type == "tool_use"
    ]
    history = [
        *question,
        {"role": "assistant", "content": [b.to_dict() for b in first.content]},
        {"role": "user", "content": [*results, {"type": "text", "text": f"Thanks {marker}"}]},
    ]
    second = claude.messages.create(
        model=model, max_tokens=200, messages=history, tools=tools, tool_choice={"type": "auto"}
    )
    check_message(second.to_dict())
    if model == "claude-fake-tools":
        sent = native.requests[-1]
        assert sent["messages"][1]["content"][-2:] == [
            {"type": "tool_use", "id": "toolu_01Weather", "name": "get_weather", "input": json.loads(WEATHER_JSON)},
            {"type": "tool_use", "id": "toolu_02Time", "name": "get_time", "input": json.loads(TIME_JSON)},
        ]
        assert sent["messages"][2]["content"] == [
            {"type": "tool_result", "tool_use_id": "toolu_01Weather", "content": "18 degrees"},
            {"type": "tool_result", "tool_use_id": "toolu_02Time", "content": "18 degrees"},
            {"type": "text", "text": f"Thanks {marker}"},
        ]
        assert sent["tools"] == [WEATHER_TOOL] and sent["tool_choice"] == {"type": "auto"}
    else:
        sent = fake.find(marker)[-1].body
        assert sent["messages"][1] == {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_fake_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        }
        assert sent["messages"][2:] == [
            {"role": "tool", "tool_call_id": "call_fake_1", "content": "18 degrees"},
            {"role": "user", "content": [{"type": "text", "text": f"Thanks {marker}"}]},
        ]
        function = {"name": "get_weather", "description": WEATHER_TOOL["description"]}
        assert sent["tools"] == [
            {"type": "function", "function": {**function, "parameters": WEATHER_TOOL["input_schema"]}}
        ]
        assert sent["tool_choice"] == "auto"


def test_thinking_blocks_go_back_to_a_native_upstream_as_they_came(
    claude: anthropic.Anthropic, native: FakeUpstream, marker: str
) -> None:
    """With thinking on, Anthropic wants the signed thinking block ahead of the tool call it led to."""
    thinking = {"type": "enabled", "budget_tokens": 1024}
    question = user(f"Weather? {marker}")
    first = claude.messages.create(
        model="claude-fake-thinking-tools", max_tokens=4000, thinking=thinking, messages=question, tools=[WEATHER_TOOL]
    )
    assert [b.type for b in first.content] == ["thinking", "tool_use"]
    history = [
        *question,
        {"role": "assistant", "content": [b.to_dict() for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": first.content[1].id, "content": "sunny"}]},
    ]
    second = claude.messages.create(
        model="claude-fake-thinking-tools", max_tokens=4000, thinking=thinking, messages=history, tools=[WEATHER_TOOL]
    )
    assert second.stop_reason == "tool_use"  # the fake refuses a turn without its signed thinking block
    assert native.requests[-1]["messages"][1]["content"][0] == {
        "type": "thinking",
        "thinking": THINKING,
        "signature": SIGNATURE,
    }


# --- native features -----------------------------------------------------------------------------------


def native_request(model: str, marker: str) -> dict[str, Any]:
    ephemeral = {"type": "ephemeral"}
    return {
        "model": model,
        "max_tokens": 3000,
        "system": [
            {"type": "text", "text": "You are a weather bot."},
            {"type": "text", "text": f"Long instructions {marker}.", "cache_control": ephemeral},
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": f"Weather? {marker}", "cache_control": ephemeral},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/sky.png"}},
                ],
            }
        ],
        "tools": [{**WEATHER_TOOL, "cache_control": ephemeral}],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "extra_body": {"top_k": 5},
    }


def test_cache_control_and_thinking_reach_a_native_upstream_natively(
    claude: anthropic.Anthropic, native: FakeUpstream, marker: str
) -> None:
    request = native_request("claude-fake", marker)
    claude.messages.create(**request)
    sent = native.requests[-1]
    assert sent["system"] == request["system"]
    assert sent["messages"] == [
        {
            "role": "user",
            "content": [
                request["messages"][0]["content"][0],
                {"type": "image", "source": {"type": "url", "url": "https://example.com/sky.png"}},
            ],
        }
    ]
    assert sent["tools"] == request["tools"]
    assert sent["thinking"] == request["thinking"] and sent["top_k"] == 5


def test_a_thinking_budget_stays_below_the_output_limit_the_gateway_sends(
    claude: anthropic.Anthropic, native: FakeUpstream, marker: str
) -> None:
    """Claude Code asks for 32000 tokens with a 31999-token budget; this model gives at most 8192."""
    thinking = {"type": "enabled", "budget_tokens": 31999}
    claude.messages.create(model="claude-fake", max_tokens=32000, thinking=thinking, messages=user(marker))
    sent = native.requests[-1]
    assert sent["max_tokens"] == 8192 and sent["thinking"] == {"type": "enabled", "budget_tokens": 8191}


def test_top_level_cache_control_marks_the_last_block(
    claude: anthropic.Anthropic, native: FakeUpstream, fake: FakeUpstream, marker: str
) -> None:
    question = [{"role": "user", "content": "Earlier."}, {"role": "assistant", "content": "Yes."}, *user(marker)]
    claude.messages.create(model="claude-fake", max_tokens=50, messages=question, cache_control={"type": "ephemeral"})
    assert native.requests[-1]["messages"][-1] == {
        "role": "user",
        "content": [{"type": "text", "text": marker, "cache_control": {"type": "ephemeral"}}],
    }
    assert native.requests[-1]["messages"][0]["content"] == [{"type": "text", "text": "Earlier."}]
    claude.messages.create(model="fake-ok", max_tokens=50, messages=question, cache_control={"type": "ephemeral"})
    assert "cache_control" not in fake.one(marker).raw


def test_anthropic_features_do_not_reach_an_openai_upstream(
    claude: anthropic.Anthropic, fake: FakeUpstream, marker: str
) -> None:
    claude.messages.create(**native_request("fake-ok", marker))
    record = fake.one(marker)
    for feature in ("cache_control", "thinking", "top_k", "native_protocol", "is_error", "signature"):
        assert feature not in record.raw, feature
    assert record.body["messages"][0] == {
        "role": "system",
        "content": [
            {"type": "text", "text": "You are a weather bot."},
            {"type": "text", "text": f"Long instructions {marker}."},
        ],
    }
    assert record.body["messages"][1]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "https://example.com/sky.png"},
    }


# --- count_tokens --------------------------------------------------------------------------------------


def test_count_tokens(claude: anthropic.Anthropic, stack: Messages, key: str, marker: str) -> None:
    request = {
        "model": "fake-ok",
        "system": "Be brief.",
        "messages": user(f"How many tokens is this sentence? {marker}"),
        "tools": [WEATHER_TOOL],
    }
    counted = claude.messages.with_raw_response.count_tokens(**request)
    body = json.loads(counted.http_response.text)
    assert set(body) == {"input_tokens"} and body["input_tokens"] == counted.parse().input_tokens
    small = claude.messages.count_tokens(model="fake-ok", messages=user("hi"))
    assert 0 < small.input_tokens < body["input_tokens"]
    assert int(counted.headers["x-gateway-prompt-bound"]) >= len(json.dumps(request["tools"]))  # bytes, at least
    assert int(counted.headers["x-gateway-prompt-bound"]) > body["input_tokens"]

    with pytest.raises(anthropic.NotFoundError) as caught:
        claude.messages.count_tokens(model="no-such-model", messages=user("hi"))
    assert caught.value.body["error"]["type"] == "not_found_error"


# --- errors --------------------------------------------------------------------------------------------


def test_a_bad_key_is_a_401_in_anthropic_s_shape(stack: Messages, raw: httpx.Client) -> None:
    body = {"model": "fake-ok", "max_tokens": 10, "messages": user("hi")}
    response = raw.post("/v1/messages", json=body, headers={"x-api-key": "sk-" + "0" * 40})
    assert "Incorrect API key" in check_error(response, 401, "authentication_error")
    check_error(raw.post("/v1/messages", json=body, headers={"x-api-key": ""}), 401, "authentication_error")
    with (
        anthropic.Anthropic(base_url=stack.root, api_key="sk-wrong-0000000000000000", max_retries=0) as sdk,
        pytest.raises(anthropic.AuthenticationError) as caught,
    ):
        sdk.messages.create(**body)
    assert caught.value.body["error"]["type"] == "authentication_error"


def test_x_api_key_and_bearer_both_work(stack: Messages, key: str, marker: str) -> None:
    body = {"model": "gateway-echo", "max_tokens": 20, "messages": user(marker)}
    with anthropic.Anthropic(base_url=stack.root, auth_token=key, max_retries=0) as bearer:
        assert bearer.messages.create(**body).content[0].type == "text"
    with httpx.Client(base_url=stack.root, trust_env=False, timeout=15) as client:
        headers = {
            "x-api-key": key,
            "anthropic-version": "2023-06-01",
            "anthropic-beta": "interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14",
        }
        check_message(client.post("/v1/messages?beta=true", json=body, headers=headers).json())
        bearer_only = {"authorization": f"Bearer {key}"}
        check_message(client.post("/v1/messages", json=body, headers=bearer_only).json())


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": "fake-ok", "messages": user("hi")}, "max_tokens"),
        ({"model": "fake-ok", "max_tokens": 10}, "messages"),
        ({"model": "fake-ok", "max_tokens": 10, "messages": [{"role": "tool", "content": "x"}]}, "messages.0.role"),
        ({"model": "fake-ok", "max_tokens": 10, "messages": user("hi"), "temperature": 1.5}, "temperature"),
        (
            {
                "model": "fake-ok",
                "max_tokens": 10,
                "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}, {"type": "image"}]}],
            },
            "messages.0.content.1.source",
        ),
        (
            {
                "model": "fake-ok",
                "max_tokens": 10,
                "messages": user("hi"),
                "tools": [{"type": "web_search_20250305", "name": "web_search"}],
            },
            "tools.0.type",
        ),
        (
            {"model": "fake-ok", "max_tokens": 10, "messages": user("hi"), "tools": [{"name": "t"}]},
            "tools.0.input_schema",
        ),
        ({"model": "fake-ok", "max_tokens": "ten", "messages": user("hi")}, "max_tokens"),
    ],
)
def test_a_malformed_request_is_a_400_naming_the_field(
    claude: anthropic.Anthropic, raw: httpx.Client, body: dict[str, Any], field: str
) -> None:
    message = check_error(raw.post("/v1/messages", json=body), 400, "invalid_request_error")
    assert field in message, message
    with pytest.raises(anthropic.BadRequestError):
        claude.post("/v1/messages", cast_to=Message, body=body)


def test_other_refusals_in_anthropic_s_shape(raw: httpx.Client) -> None:
    check_error(raw.post("/v1/messages", content=b"{not json"), 400, "invalid_request_error")
    body = {"model": "no-such-model", "max_tokens": 10, "messages": user("hi")}
    check_error(raw.post("/v1/messages", json=body), 404, "not_found_error")
    response = raw.get("/v1/messages")
    check_error(response, 405, "api_error")
    # A part the model cannot take, named where the caller put it (after the system prompt and a tool result).
    document = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": PDF}}
    body = {
        "model": "fake-ok",
        "max_tokens": 10,
        "system": "Read it.",
        "messages": [
            {"role": "user", "content": "Read this."},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "read", "input": {}}]},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": "done"},
                    {"type": "text", "text": "x"},
                    document,
                ],
            },
        ],
    }
    assert "'messages.2.content.2'" in check_error(raw.post("/v1/messages", json=body), 400, "invalid_request_error")


def test_admission_refusals_are_402_and_429_in_anthropic_s_shape(stack: Messages, make_key: MakeKey) -> None:
    body = {"model": "fake-ok", "max_tokens": 10, "messages": user("hi")}
    broke, _ = make_key(name="messages broke", monthly_credit=Decimal(0), free_requests=0)
    with httpx.Client(base_url=stack.root, headers={"x-api-key": broke}, trust_env=False, timeout=15) as client:
        check_error(client.post("/v1/messages", json=body), 402, "billing_error")
    with (
        anthropic.Anthropic(base_url=stack.root, api_key=broke, max_retries=0) as sdk,
        pytest.raises(anthropic.APIStatusError) as caught,
    ):
        sdk.messages.create(**body)
    assert caught.value.status_code == 402 and caught.value.body["error"]["type"] == "billing_error"

    slow, _ = make_key(name="messages slow lane", rpm=1)
    with httpx.Client(base_url=stack.root, headers={"x-api-key": slow}, trust_env=False, timeout=15) as client:
        assert client.post("/v1/messages", json=body).status_code == 200
        refused = client.post("/v1/messages", json=body)
        check_error(refused, 429, "rate_limit_error")
        assert int(refused.headers["retry-after"]) > 0
    with (
        anthropic.Anthropic(base_url=stack.root, api_key=slow, max_retries=0) as sdk,
        pytest.raises(anthropic.RateLimitError),
    ):
        sdk.messages.create(**body)


@pytest.mark.parametrize("model", ["fake-error-mid", "claude-fake-midstream"])
def test_a_failure_mid_stream_is_an_error_event(
    claude: anthropic.Anthropic, raw: httpx.Client, marker: str, model: str
) -> None:
    body = {"model": model, "max_tokens": 100, "messages": user(f"fail {marker}"), "stream": True}
    response = raw.post("/v1/messages", json=body)
    assert response.status_code == 200
    got = check_stream(response.text, error=True)
    assert got["blocks"] and got["blocks"][0]["text"]  # delivered before the failure
    error = named_events(response.text)[-1][1]
    assert set(error) == {"type", "error"} and error["error"]["type"] == "api_error" and error["error"]["message"]
    body.pop("stream")
    with pytest.raises(anthropic.APIStatusError), claude.messages.stream(**body) as stream:
        for _ in stream:
            pass


# --- billing -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_the_balance_moves_by_the_reported_cost_once(
    stack: Messages, make_key: MakeKey, marker: str, stream: bool
) -> None:
    key_, record = make_key(name="messages billing", free_requests=0)
    before = balance(record)
    body = {"model": "claude-fake-cache", "max_tokens": 50, "messages": user(marker)}
    with httpx.Client(base_url=stack.root, headers={"x-api-key": key_}, trust_env=False, timeout=15) as client:
        response = client.post("/v1/messages", json={**body, "stream": stream})
    if stream:
        cost = Decimal(str(check_stream(response.text)["end"]["usage"]["cost"]))
    else:
        check_message(response.json())
        cost = Decimal(str(response.json()["usage"]["cost"]))
        assert Decimal(response.headers["x-gateway-cost"]) == cost
    counts = wait_settled(record, 1)
    assert cost > 0 and counts["requests"] == 1 and counts["cost"] == cost
    assert (counts["prompt_tokens"], counts["completion_tokens"]) == (12 + 100 + 2000, 30)
    assert before - balance(record) == cost
    time.sleep(0.2)  # nothing else is charged later
    assert before - balance(record) == cost and month_counters(record.key_id)["requests"] == 1


def test_an_openai_upstream_s_cache_reads_are_not_input_tokens(claude: anthropic.Anthropic, marker: str) -> None:
    usage = claude.messages.create(model="fake-cached", max_tokens=20, messages=user(marker)).usage
    assert usage.cache_read_input_tokens == CACHED_TOKENS and usage.input_tokens == PROMPT_TOKENS - CACHED_TOKENS


# --- the translation, without servers --------------------------------------------------------------------


def test_errors_about_canonical_fields_name_the_fields_the_caller_sent() -> None:
    from gateway.wire.anthropic import request_in as messages

    body = {
        "system": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [{"type": "text", "text": "t"}, {"type": "tool_use", "id": "x"}]},
            {"role": "user", "content": [{"type": "tool_result"}, {"type": "tool_result"}, {"type": "image"}]},
        ],
    }
    assert messages.origin(body, "messages[0].content[1].text") == "system.1.text"
    assert messages.origin(body, "messages[1]") == "messages.0"
    assert messages.origin(body, "messages[2].tool_calls[0].function") == "messages.1.tool_calls.0.function"
    assert messages.origin(body, "messages[4].content[0]") == "messages.2.content.1.content.0"
    assert messages.origin(body, "messages[5].content[0]") == "messages.2.content.2"
    assert messages.origin(body, "max_tokens") == "max_tokens"


def test_portable_leaves_the_callers_body_as_it_was() -> None:
    from gateway.wire import toolkit

    control = {"type": "ephemeral"}
    body = {
        "model": "m",
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "top_k": 3,
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "q", "cache_control": control}]},
            {
                "role": "assistant",
                "content": None,
                "thinking_blocks": [{"type": "thinking", "thinking": "t", "signature": "s"}],
                "tool_calls": [
                    {
                        "id": "c",
                        "type": "function",
                        "function": {"name": "f", "arguments": "{}"},
                        "cache_control": control,
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c", "content": "r", "is_error": True, "cache_control": control},
        ],
        "tools": [{"type": "function", "function": {"name": "f"}, "cache_control": control}],
    }
    before = json.dumps(body)
    plain = toolkit.portable(body)
    assert json.dumps(body) == before
    for word in ("cache_control", "thinking", "top_k", "is_error", "signature"):
        assert word not in json.dumps(plain), word
    assert plain["messages"][1]["tool_calls"][0]["function"] == {"name": "f", "arguments": "{}"}
