"""Whole (non-streamed) chat completions end to end: the openai SDK against the gateway, the gateway
against the built-in model and the fake upstream; pass-through, upstream failures and fallback."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import openai
import pytest

from tests.support.fake_upstream import PROMPT_TOKENS, UPSTREAM_TIMEOUT, FakeUpstream
from tests.support.kit import user
from tests.support.openapi import validate_chat_completion, validate_error


def create_raw(client: openai.OpenAI, **params: Any) -> tuple[dict[str, Any], httpx.Headers]:
    """A chat completion through the SDK, validated against the schema; (JSON body, headers)."""
    raw = client.chat.completions.with_raw_response.create(**params)
    body = raw.http_response.json()
    validate_chat_completion(body)
    return body, httpx.Headers(dict(raw.headers))


# --- the built-in model ----------------------------------------------------------------------


def test_builtin_echo_answers_whole(client: openai.OpenAI) -> None:
    body, headers = create_raw(client, model="gateway-echo", messages=user("Hello there"))
    assert body["object"] == "chat.completion"
    assert body["model"] == "gateway-echo"
    assert body["id"].startswith("chatcmpl-")
    (choice,) = body["choices"]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == "You said: Hello there"
    assert choice["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert headers["x-request-id"]
    assert headers["content-type"].startswith("application/json")

    parsed = client.chat.completions.create(model="gateway-echo", messages=user("Hello there"))
    assert parsed.choices[0].message.content == "You said: Hello there"
    assert parsed.usage is not None and parsed.usage.completion_tokens == usage["completion_tokens"]


def test_alias_and_case_resolve_to_the_model_id(client: openai.OpenAI) -> None:
    for name in ("echo", "ECHO", "Gateway-Echo"):
        body, _ = create_raw(client, model=name, messages=user("hi"))
        assert body["model"] == "gateway-echo"


def test_builtin_honours_max_tokens_stop_and_n(client: openai.OpenAI) -> None:
    body, _ = create_raw(client, model="gateway-echo", messages=user("one two three four five"), max_tokens=2)
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 2

    body, _ = create_raw(client, model="gateway-echo", messages=user("alpha beta gamma"), stop=[" beta"])
    assert body["choices"][0]["message"]["content"] == "You said: alpha"

    body, _ = create_raw(client, model="gateway-echo", messages=user("hey"), n=2)
    assert [c["index"] for c in body["choices"]] == [0, 1]
    assert {c["message"]["content"] for c in body["choices"]} == {"You said: hey"}


def test_builtin_calls_a_required_tool(client: openai.OpenAI) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    body, _ = create_raw(client, model="gateway-echo", messages=user("find cats"), tools=tools, tool_choice="required")
    (choice,) = body["choices"]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["function"]["name"] == "lookup"
    assert json.loads(call["function"]["arguments"]) == {"text": "find cats"}


# --- a real upstream (the fake) ----------------------------------------------------------------


def test_fake_upstream_answers_with_its_usage(client: openai.OpenAI, fake: FakeUpstream, marker: str) -> None:
    body, headers = create_raw(client, model="fake-ok", messages=user(f"héllo wörld 👋 {marker}"))
    assert body["model"] == "fake-ok"  # the gateway's name, not the upstream's
    assert body["choices"][0]["message"]["content"] == f"Echo: héllo wörld 👋 {marker}"
    assert body["usage"]["prompt_tokens"] == PROMPT_TOKENS  # the upstream's count, not an estimate
    assert body["usage"]["prompt_tokens_details"] == {"cached_tokens": 0}
    assert body["system_fingerprint"] == "fp_fake"
    assert body["provider"] == "fake"
    assert headers["x-gateway-provider"] == "fake"
    received = fake.one(marker)
    assert received.model == "ok" and received.prefix == "/v1"
    assert "authorization" not in received.headers, "the caller's gateway key leaked upstream"


def test_request_goes_upstream_untouched(http: httpx.Client, fake: FakeUpstream, marker: str) -> None:
    """Every known field but the model name reaches the upstream exactly as sent, unknown keys of messages and parts
    included; an unknown top-level field does not (a server's own extension may change what it bills)."""
    sent = {
        "model": "fake-alias",
        "messages": [
            {"role": "system", "content": "Be brief.", "x_note": {"keep": True}},
            {
                "role": "user",
                "name": "ada",
                "content": [
                    {"type": "text", "text": f"what is this? {marker}", "cache_control": {"type": "ephemeral"}},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
                ],
            },
        ],
        "temperature": 0.2,
        "top_p": 0.9,
        "max_tokens": 50,
        "frequency_penalty": 0.5,
        "presence_penalty": -0.5,
        "n": 1,
        "stop": ["\n\n", "END"],
        "seed": 42,
        "user": "user-1234",
        "logit_bias": {"50256": -100},
        "metadata": {"team": "e2e"},
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                    "strict": True,
                },
            }
        ],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": True},
        },
        "reasoning_effort": "low",
        "some_future_field": {"nested": [1, 2.5, None, "x"]},
    }
    response = http.post("/chat/completions", json=sent)
    assert response.status_code == 200, response.text
    validate_chat_completion(response.json())
    received = fake.one(marker)
    # `metadata` is stored by some providers: it goes only where the catalog allows it (test_money_attacks_e2e).
    expected = {k: v for k, v in sent.items() if k not in ("metadata", "some_future_field")}
    assert received.body == {**expected, "model": "ok"}
    assert list(received.body) == list(expected), "the upstream body's field order changed"


def test_multimodal_content_parts_pass_through(client: openai.OpenAI, fake: FakeUpstream, marker: str) -> None:
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": f"describe {marker}"},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "high"}},
            ],
        }
    ]
    body, _ = create_raw(client, model="fake-ok", messages=messages)
    assert body["choices"][0]["message"]["content"] == f"Echo: describe {marker} (+1 image)"
    assert fake.one(marker).body["messages"] == messages


def test_tool_call_answer_and_tool_turns(client: openai.OpenAI, fake: FakeUpstream, marker: str) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            },
        }
    ]
    body, _ = create_raw(
        client, model="fake-tools", messages=user(f"weather? {marker}"), tools=tools, tool_choice="auto"
    )
    (choice,) = body["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["id"] == "call_fake_1" and call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    received = fake.one(marker).body
    assert received["tools"] == tools and received["tool_choice"] == "auto"

    # The caller answers the call; the tool turn goes upstream as sent.
    follow_up = [
        *user(f"weather? {marker}-2"),
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": '{"temp_c": 21}'},
    ]
    body, _ = create_raw(client, model="fake-ok", messages=follow_up, tools=tools)
    assert fake.one(f"{marker}-2").body["messages"] == follow_up


def test_a_slow_upstream_within_the_timeout_answers(client: openai.OpenAI) -> None:
    body, _ = create_raw(client, model="fake-slow", messages=user("take your time"))
    assert body["choices"][0]["message"]["content"] == "Echo: take your time"


def test_an_odd_finish_reason_is_mapped_to_openai_s(client: openai.OpenAI) -> None:
    body, _ = create_raw(client, model="fake-odd-finish", messages=user("bye"))
    assert body["choices"][0]["finish_reason"] == "stop"


# --- upstream failures ---------------------------------------------------------------------------


def post_chat(http: httpx.Client, model: str, text: str, **extra: Any) -> httpx.Response:
    return http.post("/chat/completions", json={"model": model, "messages": user(text), **extra})


def assert_error(response: httpx.Response, status: int, type_: str | None = None, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    validate_error(body, status=status)
    assert response.headers["x-request-id"]
    if type_ is not None:
        assert body["error"]["type"] == type_, body
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


@pytest.mark.parametrize(("model", "upstream_status"), [("fake-error-500", 500), ("fake-error-429", 429)])
def test_upstream_failure_without_fallback_is_a_502(
    http: httpx.Client, fake: FakeUpstream, marker: str, model: str, upstream_status: int
) -> None:
    response = post_chat(http, model, marker)
    error = assert_error(response, 502, "upstream_error")
    assert f"HTTP {upstream_status}" in error["message"]
    assert response.headers.get("x-should-retry") != "false"
    assert len(fake.find(marker)) == 1


def test_the_sdk_raises_a_server_error_for_a_502(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as raised:
        client.chat.completions.create(model="fake-error-500", messages=user("again"))
    assert raised.value.status_code == 502
    assert raised.value.code == "upstream_error"


def test_upstream_bad_request_is_passed_through_as_a_400(
    http: httpx.Client, client: openai.OpenAI, marker: str
) -> None:
    response = post_chat(http, "fake-error-400", marker)
    error = assert_error(response, 400, "invalid_request_error")
    assert "fake upstream says: 'tools[0].function.name' is invalid" in error["message"]
    assert response.headers.get("x-should-retry") == "false"
    with pytest.raises(openai.BadRequestError, match="is invalid"):
        client.chat.completions.create(model="fake-error-400", messages=user("again"))


def test_a_hung_upstream_is_a_quick_504_and_is_abandoned(http: httpx.Client, fake: FakeUpstream, marker: str) -> None:
    started = time.monotonic()
    response = post_chat(http, "fake-hang", marker)
    elapsed = time.monotonic() - started
    assert_error(response, 504, code="upstream_timeout")
    assert UPSTREAM_TIMEOUT * 0.9 <= elapsed < UPSTREAM_TIMEOUT + 2, elapsed
    assert fake.one(marker).wait_ended(3) == "disconnected", "the gateway kept the upstream request open"


@pytest.mark.parametrize("model", ["fake-not-json", "fake-unreachable"])
def test_an_unusable_upstream_is_a_502(http: httpx.Client, model: str) -> None:
    assert_error(post_chat(http, model, "hi"), 502, "upstream_error")


def test_a_malformed_upstream_answer_is_a_502(http: httpx.Client) -> None:
    assert_error(post_chat(http, "fake-garbage", "hi"), 502, "upstream_error")


def test_a_malformed_upstream_usage_is_not_an_internal_error(http: httpx.Client) -> None:
    """A usage that is not an object is either ignored (the gateway counts tokens) or a 502: never a 500."""
    response = post_chat(http, "fake-bad-usage", "count me")
    assert response.status_code in (200, 502), response.text
    if response.status_code == 200:
        body = response.json()
        validate_chat_completion(body)
        assert isinstance(body["usage"]["prompt_tokens"], int) and body["usage"]["completion_tokens"] > 0
    else:
        assert_error(response, 502, "upstream_error")


def test_a_model_without_a_configured_provider_is_a_503(http: httpx.Client) -> None:
    response = post_chat(http, "fake-offline", "hi")
    assert_error(response, 503, code="no_provider_available")
    assert int(response.headers["retry-after"]) > 0
    assert int(response.headers["retry-after-ms"]) == 1000 * int(response.headers["retry-after"])


@pytest.mark.parametrize(
    ("model", "first"),
    [
        ("fake-fallback", "error-500"),
        ("fake-fallback-429", "error-429"),
        ("fake-fallback-timeout", "hang"),
        ("fake-fallback-unreachable", None),
    ],
)
def test_falls_back_to_the_next_offering(
    client: openai.OpenAI, fake: FakeUpstream, marker: str, model: str, first: str | None
) -> None:
    body, headers = create_raw(client, model=model, messages=user(f"fall back {marker}"))
    assert body["model"] == model
    assert body["choices"][0]["message"]["content"] == f"Echo: fall back {marker}"
    assert body["provider"] == "fake2" and headers["x-gateway-provider"] == "fake2"
    tried = fake.find(marker)
    expected = [("/v1", first), ("/second/v1", "ok")] if first else [("/second/v1", "ok")]
    assert [(r.prefix, r.model) for r in tried] == expected


def test_no_fallback_after_the_upstream_refuses_the_request(
    http: httpx.Client, fake: FakeUpstream, marker: str
) -> None:
    """A 400 is the caller's to fix: another provider would refuse it too."""
    assert_error(post_chat(http, "fake-no-fallback-400", marker), 400)
    assert [r.prefix for r in fake.find(marker)] == ["/v1"]


# --- shared provider health: cooldowns ---------------------------------------------------------


def test_an_upstream_429_with_retry_after_cools_the_provider_down(
    http: httpx.Client, fake: FakeUpstream, marker: str
) -> None:
    """The upstream said when to come back (Retry-After: 7): until then it is not called again."""
    assert_error(post_chat(http, "fake-error-429", marker), 502)
    response = post_chat(http, "fake-error-429", marker)
    assert_error(response, 503, code="no_provider_available")
    assert 1 <= int(response.headers["retry-after"]) <= 8  # 7, rounded up
    assert len(fake.find(marker)) == 1, "a cooling provider was called again"

    # A model with another offering skips the cooling provider without trying it.
    assert post_chat(http, "fake-fallback-429", f"{marker}-a").status_code == 200
    assert post_chat(http, "fake-fallback-429", f"{marker}-b").status_code == 200
    assert [r.prefix for r in fake.find(f"{marker}-a")] == ["/v1", "/second/v1"]
    assert [r.prefix for r in fake.find(f"{marker}-b")] == ["/second/v1"]


def test_repeated_upstream_failures_cool_the_provider_down(http: httpx.Client, fake: FakeUpstream, marker: str) -> None:
    statuses = [post_chat(http, "fake-error-500", marker).status_code for _ in range(4)]
    assert statuses[0] == 502 and statuses[-1] == 503, statuses
    assert 503 not in statuses[:2], "one or two failures must not cool a provider down"
    assert len(fake.find(marker)) == statuses.index(503)


# --- routing: auto, fallback models, provider preferences ---------------------------------------


def test_auto_picks_a_model_that_is_served(client: openai.OpenAI) -> None:
    body, _ = create_raw(client, model="auto", messages=user("pick one"))
    served = {m.id for m in client.models.list() if (m.model_extra or {}).get("available")}
    assert body["model"] != "auto" and body["model"] in served
    assert body["choices"][0]["message"]["content"]


def test_the_models_list_is_a_fallback_chain(http: httpx.Client, fake: FakeUpstream, marker: str) -> None:
    """OpenRouter's `models`: when the requested model fails, the next one answers (and is named)."""
    response = post_chat(http, "fake-error-500", f"chain {marker}", models=["fake-ok"])
    assert response.status_code == 200, response.text
    body = response.json()
    validate_chat_completion(body)
    assert body["model"] == "fake-ok"
    assert body["choices"][0]["message"]["content"] == f"Echo: chain {marker}"
    assert [r.model for r in fake.find(marker)] == ["error-500", "ok"]
    assert all("models" not in r.body for r in fake.find(marker)), "the gateway's own field went upstream"


@pytest.mark.parametrize(
    ("preferences", "prefix"),
    [({"order": ["fake2", "fake"]}, "/second/v1"), ({"ignore": ["fake"]}, "/second/v1"), ({"only": ["fake"]}, "/v1")],
)
def test_provider_preferences_choose_the_offering(
    http: httpx.Client, fake: FakeUpstream, marker: str, preferences: dict[str, Any], prefix: str
) -> None:
    response = post_chat(http, "fake-ok", marker, provider=preferences)
    assert response.status_code == 200, response.text
    (received,) = fake.find(marker)
    assert received.prefix == prefix
    assert "provider" not in received.body, "the gateway's own field went upstream"
