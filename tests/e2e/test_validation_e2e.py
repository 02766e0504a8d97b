"""Request validation end to end: every 400 of shared/seeds/003 names its parameter, plus malformed
JSON, wrong types, the body size limit, wrong methods and unknown routes and models."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from tests.support.fake_upstream import FakeUpstream
from tests.support.openapi import validate_error, validate_unified_error
from tests.support.stack import Stack

MESSAGES = [{"role": "user", "content": "hi"}]
BASE = {"model": "fake-ok", "messages": MESSAGES}
MAX_BODY = 10 * 1024 * 1024  # DESIGN.md: a request body is at most 10 MB


def without(name: str) -> dict[str, Any]:
    return {k: v for k, v in BASE.items() if k != name}


def assert_400(response: httpx.Response, param: str | None) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    body = response.json()
    validate_error(body, status=400)
    error = body["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param, error
    assert error["message"]
    assert response.headers["x-should-retry"] == "false"
    assert response.headers["x-request-id"]
    return error


# shared/seeds/003's list of 400s, each with the parameter it must name.
SEED_003 = [
    ("model missing", without("model"), "model"),
    ("model null", {**BASE, "model": None}, "model"),
    ("messages missing", without("messages"), "messages"),
    ("messages null", {**BASE, "messages": None}, "messages"),
    ("messages a string", {**BASE, "messages": "hello"}, "messages"),
    ("messages an object", {**BASE, "messages": {"role": "user", "content": "hi"}}, "messages"),
    ("messages empty", {**BASE, "messages": []}, "messages"),
    ("temperature above 2", {**BASE, "temperature": 2.01}, "temperature"),
    ("temperature below 0", {**BASE, "temperature": -0.1}, "temperature"),
    ("temperature a string", {**BASE, "temperature": "1"}, "temperature"),
    ("top_p above 1", {**BASE, "top_p": 1.5}, "top_p"),
    ("top_p below 0", {**BASE, "top_p": -0.01}, "top_p"),
    ("max_tokens 0", {**BASE, "max_tokens": 0}, "max_tokens"),
    ("max_tokens -1", {**BASE, "max_tokens": -1}, "max_tokens"),
    ("max_tokens 1.5", {**BASE, "max_tokens": 1.5}, "max_tokens"),
    ('max_tokens "10"', {**BASE, "max_tokens": "10"}, "max_tokens"),
    ("max_tokens true", {**BASE, "max_tokens": True}, "max_tokens"),
    ("five stop sequences", {**BASE, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
]

WRONG_TYPES = [
    ('stream "yes"', {**BASE, "stream": "yes"}, "stream"),
    ("stream 1", {**BASE, "stream": 1}, "stream"),
    ("messages[0] a string", {**BASE, "messages": ["hi"]}, "messages[0]"),
    ("messages[1] a list", {**BASE, "messages": [*MESSAGES, [1]]}, "messages[1]"),
    ("messages[0] without role", {**BASE, "messages": [{"content": "hi"}]}, "messages[0].role"),
    ("messages[0] with an unknown role", {**BASE, "messages": [{"role": "bot", "content": "x"}]}, "messages[0].role"),
    ("messages[0] without content", {**BASE, "messages": [{"role": "user"}]}, "messages[0].content"),
    ("content a number", {**BASE, "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    (
        "content part without type",
        {**BASE, "messages": [{"role": "user", "content": [{"text": "x"}]}]},
        "messages[0].content[0].type",
    ),
    ("model a number", {**BASE, "model": 4}, "model"),
    ("model empty", {**BASE, "model": ""}, "model"),
    ("temperature a boolean", {**BASE, "temperature": True}, "temperature"),
    ("stop a number", {**BASE, "stop": 5}, "stop"),
    ("stream_options a string", {**BASE, "stream": True, "stream_options": "usage"}, "stream_options"),
    (
        "stream_options.include_usage a string",
        {**BASE, "stream": True, "stream_options": {"include_usage": "no"}},
        "stream_options.include_usage",
    ),
    ("tools an object", {**BASE, "tools": {"type": "function"}}, "tools"),
    ("tool_choice unknown", {**BASE, "tool_choice": "sometimes"}, "tool_choice"),
    ("n 0", {**BASE, "n": 0}, "n"),
    ("frequency_penalty 3", {**BASE, "frequency_penalty": 3}, "frequency_penalty"),
    ("presence_penalty -3", {**BASE, "presence_penalty": -3}, "presence_penalty"),
]


def assert_refused_here(http: httpx.Client, fake: FakeUpstream, body: dict[str, Any], param: str) -> None:
    """A 400 naming `param`, and the upstream never asked."""
    before = len(fake.records)
    assert_400(http.post("/chat/completions", json=body), param)
    assert len(fake.records) == before, "an invalid request reached the upstream"


@pytest.mark.parametrize(("label", "body", "param"), SEED_003 + WRONG_TYPES, ids=[c[0] for c in SEED_003 + WRONG_TYPES])
def test_invalid_request_names_the_parameter(
    http: httpx.Client, fake: FakeUpstream, label: str, body: dict[str, Any], param: str
) -> None:
    assert_refused_here(http, fake, body, param)


@pytest.mark.parametrize(
    "body",
    [
        {**BASE, "temperature": 0, "top_p": 0},
        {**BASE, "temperature": 2, "top_p": 1, "max_tokens": 1},
        {**BASE, "stop": ["a", "b", "c", "d"]},
        {**BASE, "stop": "a"},
        {**BASE, "temperature": None, "max_tokens": None, "stop": None},
    ],
    ids=["lower bounds", "upper bounds", "four stop sequences", "one stop string", "nulls"],
)
def test_values_at_the_limits_are_accepted(http: httpx.Client, body: dict[str, Any]) -> None:
    response = http.post("/chat/completions", json=body)
    assert response.status_code == 200, response.text


def test_the_sdk_raises_bad_request_with_the_param(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="gateway-echo", messages=MESSAGES, temperature=3)
    assert raised.value.status_code == 400
    assert raised.value.param == "temperature"
    assert raised.value.type == "invalid_request_error"


@pytest.mark.parametrize(
    "content",
    [b"{not json", b'{"model": "fake-ok", "messages": [', b"", b"   ", b"\xff\xfe", b'{"model": "x"} trailing'],
    ids=["garbage", "truncated", "empty", "blank", "not utf-8", "trailing data"],
)
def test_malformed_json_is_a_400(http: httpx.Client, content: bytes) -> None:
    response = http.post("/chat/completions", content=content, headers={"content-type": "application/json"})
    assert_400(response, None)


@pytest.mark.parametrize("body", [[BASE], "hello", 42, None], ids=["array", "string", "number", "null"])
def test_a_body_that_is_not_an_object_is_a_400(http: httpx.Client, body: Any) -> None:
    assert_400(http.post("/chat/completions", json=body), None)


def test_a_body_over_10_mb_is_a_413(http: httpx.Client) -> None:
    padding = "x" * (MAX_BODY + 1)
    content = b'{"model": "fake-ok", "messages": [{"role": "user", "content": "' + padding.encode() + b'"}]}'
    assert len(content) > MAX_BODY
    try:
        response = http.post("/chat/completions", content=content, headers={"content-type": "application/json"})
    except httpx.WriteError:  # pragma: no cover - a server may answer and close before the upload ends
        pytest.fail("the gateway closed the connection before answering the oversized body with a 413")
    assert response.status_code == 413, response.text[:500]
    body = response.json()
    validate_error(body)
    assert body["error"]["code"] == "request_too_large"
    assert response.headers["x-should-retry"] == "false"
    assert response.headers["x-request-id"]


def test_a_body_just_under_the_limit_is_read(http: httpx.Client) -> None:
    """Just under 10 MB is read and judged on its content (here: an unknown model, so a 404)."""
    head = b'{"model": "no-such-model", "messages": [{"role": "user", "content": "'
    tail = b'"}]}'
    content = head + b"y" * (MAX_BODY - len(head) - len(tail)) + tail
    assert len(content) == MAX_BODY
    response = http.post("/chat/completions", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 404, response.text[:500]


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_a_wrong_method_is_a_405_with_allow(http: httpx.Client, method: str) -> None:
    response = http.request(method, "/chat/completions")
    assert response.status_code == 405, response.text
    assert response.headers["allow"] == "POST"
    validate_error(response.json())
    assert response.headers["x-should-retry"] == "false"
    assert response.headers["x-request-id"]


def test_a_wrong_method_on_the_models_route_is_a_405(http: httpx.Client) -> None:
    response = http.post("/models", json={})
    assert response.status_code == 405
    assert "GET" in response.headers["allow"]
    validate_error(response.json())


def test_an_unknown_route_is_a_404(http: httpx.Client) -> None:
    response = http.post("/chat/complete", json=BASE)
    assert response.status_code == 404
    validate_error(response.json())
    assert response.headers["x-request-id"]


@pytest.mark.parametrize("model", ["no-such-model", "gpt-9000", "fake-ok-but-not"])
def test_an_unknown_model_is_a_404_model_not_found(http: httpx.Client, fake: FakeUpstream, model: str) -> None:
    before = len(fake.records)
    response = http.post("/chat/completions", json={**BASE, "model": model})
    assert response.status_code == 404, response.text
    body = response.json()
    validate_error(body, status=404)
    assert body["error"]["code"] == "model_not_found"
    assert body["error"]["param"] == "model"
    assert model in body["error"]["message"]
    assert response.headers["x-should-retry"] == "false"
    assert len(fake.records) == before


def test_the_sdk_raises_not_found_for_an_unknown_model(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(model="no-such-model", messages=MESSAGES)
    assert raised.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=MESSAGES, stream=True)


# --- every malformed value is a 400 naming its parameter (none may reach the code behind validation) ---

USER = {"role": "user", "content": "hi"}
CALL = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}


def with_message(message: dict[str, Any], before: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    return {**BASE, "messages": [*before, message]}


def with_part(part: Any) -> dict[str, Any]:
    return with_message({"role": "user", "content": [{"type": "text", "text": "look"}, part]})


def assistant_call(call: Any) -> dict[str, Any]:
    return with_message({"role": "assistant", "content": None, "tool_calls": [call]}, (USER,))


MALFORMED = [
    # messages and their content parts
    ("role a list", with_message({"role": ["user"], "content": "x"}), "messages[0].role"),
    ("role an object", with_message({"role": {"user": 1}, "content": "x"}), "messages[0].role"),
    ("role a number", with_message({"role": 1, "content": "x"}), "messages[0].role"),
    ("name a number", with_message({**USER, "name": 5}), "messages[0].name"),
    ("content part a string", with_part("text"), "messages[0].content[1]"),
    ("text part without text", with_part({"type": "text"}), "messages[0].content[1].text"),
    ("text part's text a list", with_part({"type": "text", "text": ["a"]}), "messages[0].content[1].text"),
    ("part type a number", with_part({"type": 3}), "messages[0].content[1].type"),
    (
        "image_url a string",
        with_part({"type": "image_url", "image_url": "https://x/a.png"}),
        "messages[0].content[1].image_url",
    ),
    ("image_url missing", with_part({"type": "image_url"}), "messages[0].content[1].image_url"),
    (
        "image_url without url",
        with_part({"type": "image_url", "image_url": {}}),
        "messages[0].content[1].image_url.url",
    ),
    (
        "image_url.url a number",
        with_part({"type": "image_url", "image_url": {"url": 5}}),
        "messages[0].content[1].image_url.url",
    ),
    (
        "input_audio without format",
        with_part({"type": "input_audio", "input_audio": {"data": "AAAA"}}),
        "messages[0].content[1].input_audio.format",
    ),
    ("input_audio a list", with_part({"type": "input_audio", "input_audio": []}), "messages[0].content[1].input_audio"),
    ("file a string", with_part({"type": "file", "file": "f.pdf"}), "messages[0].content[1].file"),
    (
        "file.file_data a list",
        with_part({"type": "file", "file": {"file_data": [1]}}),
        "messages[0].content[1].file.file_data",
    ),
    ("tool_calls a string", with_message({"role": "assistant", "tool_calls": "f"}, (USER,)), "messages[1].tool_calls"),
    ("tool_calls[0] a number", assistant_call(1), "messages[1].tool_calls[0]"),
    (
        "tool call without id",
        assistant_call({k: v for k, v in CALL.items() if k != "id"}),
        "messages[1].tool_calls[0].id",
    ),
    (
        "tool call without type",
        assistant_call({k: v for k, v in CALL.items() if k != "type"}),
        "messages[1].tool_calls[0].type",
    ),
    (
        "tool call without function",
        assistant_call({"id": "c", "type": "function"}),
        "messages[1].tool_calls[0].function",
    ),
    ("tool call function a string", assistant_call({**CALL, "function": "f"}), "messages[1].tool_calls[0].function"),
    (
        "tool call arguments an object",
        assistant_call({**CALL, "function": {"name": "f", "arguments": {}}}),
        "messages[1].tool_calls[0].function.arguments",
    ),
    (
        "tool call name missing",
        assistant_call({**CALL, "function": {"arguments": "{}"}}),
        "messages[1].tool_calls[0].function.name",
    ),
    (
        "tool_call_id a number",
        with_message({"role": "tool", "tool_call_id": 7, "content": "r"}, (USER,)),
        "messages[1].tool_call_id",
    ),
    ("tool_call_id missing", with_message({"role": "tool", "content": "r"}, (USER,)), "messages[1].tool_call_id"),
    (
        "function_call a string",
        with_message({"role": "assistant", "function_call": "f"}, (USER,)),
        "messages[1].function_call",
    ),
    (
        "refusal a number",
        with_message({"role": "assistant", "content": "x", "refusal": 1}, (USER,)),
        "messages[1].refusal",
    ),
    # the gateway's own fields
    ("models an array of objects", {**BASE, "models": [{}]}, "models[0]"),
    ("models a string", {**BASE, "models": "fake-ok"}, "models"),
    ("models with an empty id", {**BASE, "models": ["fake-ok", ""]}, "models[1]"),
    ("provider a list", {**BASE, "provider": ["fake"]}, "provider"),
    ("provider.order of numbers", {**BASE, "provider": {"order": [1]}}, "provider.order[0]"),
    ("provider.only a string", {**BASE, "provider": {"only": "fake"}}, "provider.only"),
    ("provider.sort a number", {**BASE, "provider": {"sort": 1}}, "provider.sort"),
    ("provider.allow_fallbacks a string", {**BASE, "provider": {"allow_fallbacks": "no"}}, "provider.allow_fallbacks"),
    ("provider.max_price a number", {**BASE, "provider": {"max_price": 5}}, "provider.max_price"),
    (
        "provider.max_price.prompt a string",
        {**BASE, "provider": {"max_price": {"prompt": "cheap"}}},
        "provider.max_price.prompt",
    ),
    (
        "provider.max_price.completion < 0",
        {**BASE, "provider": {"max_price": {"completion": -1}}},
        "provider.max_price.completion",
    ),
    (
        "provider.max_price.prompt true",
        {**BASE, "provider": {"max_price": {"prompt": True}}},
        "provider.max_price.prompt",
    ),
    ("model_id a string", {**BASE, "model_id": "7"}, "model_id"),
    ("model_id 1.5", {**BASE, "model_id": 1.5}, "model_id"),
    # tools and output format
    ("tools[0] a string", {**BASE, "tools": ["f"]}, "tools[0]"),
    ("tools[0] without type", {**BASE, "tools": [{"function": {"name": "f"}}]}, "tools[0].type"),
    ("function tool without function", {**BASE, "tools": [{"type": "function"}]}, "tools[0].function"),
    (
        "function tool name a number",
        {**BASE, "tools": [{"type": "function", "function": {"name": 1}}]},
        "tools[0].function.name",
    ),
    (
        "function tool parameters a string",
        {**BASE, "tools": [{"type": "function", "function": {"name": "f", "parameters": "{}"}}]},
        "tools[0].function.parameters",
    ),
    ("tool_choice a number", {**BASE, "tool_choice": 1}, "tool_choice"),
    ("tool_choice without type", {**BASE, "tool_choice": {"function": {"name": "f"}}}, "tool_choice.type"),
    (
        "tool_choice function a string",
        {**BASE, "tool_choice": {"type": "function", "function": "f"}},
        "tool_choice.function",
    ),
    ("response_format a string", {**BASE, "response_format": "json"}, "response_format"),
    ("response_format without type", {**BASE, "response_format": {}}, "response_format.type"),
    ("json_schema missing", {**BASE, "response_format": {"type": "json_schema"}}, "response_format.json_schema"),
    # the other parameters
    ("logit_bias a list", {**BASE, "logit_bias": [1]}, "logit_bias"),
    ("logit_bias value a string", {**BASE, "logit_bias": {"50256": "ban"}}, "logit_bias.50256"),
    ("logit_bias value 101", {**BASE, "logit_bias": {"50256": 101}}, "logit_bias.50256"),
    ("logprobs a string", {**BASE, "logprobs": "yes"}, "logprobs"),
    ("top_logprobs 21", {**BASE, "top_logprobs": 21}, "top_logprobs"),
    ("top_logprobs 2.5", {**BASE, "top_logprobs": 2.5}, "top_logprobs"),
    ("seed a string", {**BASE, "seed": "42"}, "seed"),
    ("seed 1.5", {**BASE, "seed": 1.5}, "seed"),
    ("seed 1e300", {**BASE, "seed": 1e300}, "seed"),
    ("user a number", {**BASE, "user": 5}, "user"),
    ("metadata a list", {**BASE, "metadata": ["a"]}, "metadata"),
    ("metadata value a number", {**BASE, "metadata": {"team": 5}}, "metadata.team"),
    ("service_tier a number", {**BASE, "service_tier": 1}, "service_tier"),
    ("store a string", {**BASE, "store": "true"}, "store"),
    ("parallel_tool_calls 1", {**BASE, "parallel_tool_calls": 1}, "parallel_tool_calls"),
    ("modalities a string", {**BASE, "modalities": "text"}, "modalities"),
    ("modalities of numbers", {**BASE, "modalities": ["text", 1]}, "modalities[1]"),
    ("reasoning_effort a number", {**BASE, "reasoning_effort": 1}, "reasoning_effort"),
    ("prediction a string", {**BASE, "prediction": "x"}, "prediction"),
    ("audio a list", {**BASE, "audio": []}, "audio"),
    ("web_search_options true", {**BASE, "web_search_options": True}, "web_search_options"),
    ("n 70.5", {**BASE, "n": 70.5}, "n"),
    ("n 1e300", {**BASE, "n": 1e300}, "n"),
    ("max_tokens 1e300", {**BASE, "max_tokens": 1e300}, "max_tokens"),
    ("max_tokens a huge integer", {**BASE, "max_tokens": 10**30}, "max_tokens"),
    ("max_completion_tokens 0.5", {**BASE, "max_completion_tokens": 0.5}, "max_completion_tokens"),
    ("stop with a number", {**BASE, "stop": ["a", 1]}, "stop[1]"),
]


@pytest.mark.parametrize(("label", "body", "param"), MALFORMED, ids=[c[0] for c in MALFORMED])
def test_every_malformed_value_is_a_400_naming_it(
    http: httpx.Client, fake: FakeUpstream, label: str, body: dict[str, Any], param: str
) -> None:
    assert_refused_here(http, fake, body, param)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model_id": "7", "messages": MESSAGES}, "model_id"),
        ({"model_id": [1], "messages": MESSAGES}, "model_id"),
        ({"model_id": 1.5, "messages": MESSAGES}, "model_id"),
        ({"messages": [{"role": ["user"], "content": "x"}]}, "messages[0].role"),
        ({"messages": MESSAGES, "provider": {"max_price": {"prompt": "x"}}}, "provider.max_price.prompt"),
    ],
    ids=["model_id a string", "model_id a list", "model_id 1.5", "role a list", "max_price a string"],
)
def test_the_unified_route_names_the_parameter_too(http: httpx.Client, body: dict[str, Any], param: str) -> None:
    response = http.post(str(http.base_url).removesuffix("/v1/") + "/api/chat", json=body)
    assert response.status_code == 400, response.text
    validate_unified_error(response.json(), 400)  # the unified API's own error shape
    assert response.json()["param"] == param and response.headers["x-should-retry"] == "false"


def test_integral_numbers_are_integers_and_reach_the_upstream_as_such(
    http: httpx.Client, fake: FakeUpstream, marker: str
) -> None:
    """JSON Schema's integer is any number with no fraction: 100.0 is accepted, and sent on as 100."""
    body = {
        "model": "fake-ok",
        "messages": [{"role": "user", "content": marker}],
        "max_tokens": 100.0,
        "n": 1.0,
        "seed": 3.0,
        "logprobs": True,
        "top_logprobs": 2.0,
    }
    response = http.post("/chat/completions", json=body)
    assert response.status_code == 200, response.text
    received = fake.one(marker)
    for name, value in (("max_tokens", 100), ("n", 1), ("seed", 3), ("top_logprobs", 2)):
        assert received.body[name] == value and type(received.body[name]) is int, (name, received.raw)


def test_well_formed_structures_pass_through_untouched(http: httpx.Client, fake: FakeUpstream, marker: str) -> None:
    """Well-formed shapes are accepted, and unknown message keys pass as sent (unknown top-level fields do not).

    (Audio and file parts are well-formed too, but the fake model takes only text and images: the router
    refuses them, as it does metadata and the other fields a provider may charge for. A part type outside
    OpenAI's is refused: test_an_unknown_content_part_is_a_400_before_anything_is_held.)
    """
    messages = [
        {"role": "system", "content": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}]},
        {
            "role": "user",
            "name": "ada",
            "content": [
                {"type": "text", "text": marker},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}},
            ],
            "x_vendor_key": {"kept": True},
        },
        {"role": "assistant", "content": None, "tool_calls": [CALL], "refusal": None},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]},
        {"role": "user", "content": "and now?"},
    ]
    body = {
        "model": "fake-ok",
        "messages": messages,
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}, "strict": True}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "object"}}},
        "logit_bias": {"50256": -100, "11": 2.5},
        "metadata": {"team": "a"},
        "modalities": ["text"],
        "provider": {"max_price": {"prompt": 10, "completion": None}, "sort": {"by": "price"}, "allow_fallbacks": True},
        "x_unknown_field": {"nested": [1, "two"]},
    }
    response = http.post("/chat/completions", json=body)
    assert response.status_code == 200, response.text
    received = fake.one(marker).body
    assert received["messages"] == messages
    assert "x_unknown_field" not in received  # unknown top-level fields: a provider is sent only what is known
    assert received["tools"] == body["tools"] and received["response_format"] == body["response_format"]


def test_an_unknown_content_part_is_a_400_before_anything_is_held(
    http: httpx.Client, fake: FakeUpstream, marker: str
) -> None:
    """Content parts are a closed list per role: another protocol's block never reaches a provider unbounded."""
    for part in (
        {"type": "x-vendor-part", "payload": {"any": [1, None]}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
        {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}},
    ):
        content = [{"type": "text", "text": marker}, part]
        response = http.post(
            "/chat/completions", json={"model": "fake-ok", "messages": [{"role": "user", "content": content}]}
        )
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["param"] == "messages[0].content[1].type" and error["code"] == "unsupported_content"
    assert not fake.find(marker)


def test_validation_costs_no_more_for_a_long_prompt() -> None:
    """It runs on every request: a 90 KB message must take well under a millisecond."""
    import time

    from gateway.wire.chat.request import validate

    text = "word " * 18_000  # 90 KB
    parts = [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": "https://x/a.png"}}]
    messages = [{"role": "user", "content": text}, {"role": "user", "content": parts}] * 100
    started = time.perf_counter()
    validate({"model": "fake-ok", "messages": messages})
    assert (time.perf_counter() - started) / len(messages) < 0.001


def test_a_client_that_hangs_up_mid_upload_is_not_an_error(
    e2e: Stack, api_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Headers promise 100 KB, 10 bytes arrive, then the socket closes: an info line, no ERROR, no trace."""
    import logging
    import socket
    import time

    host, port = "127.0.0.1", e2e.gateway.port
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {api_key}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    )
    with caplog.at_level(logging.INFO):
        with socket.create_connection((host, port), timeout=5) as sock:
            sock.sendall(head.encode() + b'{"model": ')
            time.sleep(0.2)  # the gateway authenticates the key and starts reading the body
        deadline = time.monotonic() + 10
        while not any(
            r.levelno >= logging.ERROR or getattr(r, "code", "") == "client_disconnected" for r in caplog.records
        ):
            assert time.monotonic() < deadline, "the gateway never noticed the client hung up"
            time.sleep(0.02)
        time.sleep(0.1)  # anything the server would log after the handler returns
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
    assert not any(r.exc_info for r in caplog.records), "a traceback was logged"
