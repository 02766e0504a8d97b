"""Property tests: no body, however malformed, gets anything but a ChatRequest or a 400 naming its parameter.

validate() is the only guard in front of code that reads the body without checking it (token counts,
routing, the built-in model, translation to other protocols), so these also run that code on every
body validate() lets through. Then fuzzed bodies go through the whole app in process (moto's mock_aws,
a real key, the built-in model) and none may be answered with a 5xx.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.errors import GatewayError
from gateway.wire.chat.request import ChatRequest, validate
from tests.support.keys import E2E_KEY_FIELDS
from tests.support.moto import own_tables
from tests.support.openapi import validate_unified_error
from tests.support.strategies import ANY, BIG, json_values, plausible

REPO = Path(__file__).resolve().parents[2]
TABLES = {"KeysTable": "fuzz-keys", "UsageTable": "fuzz-usage"}
ENV = {
    "GATEWAY_CATALOG_EXTRA": "",
    "BUILTIN_TOKEN_DELAY": "0",
    "KEY_CACHE_SECONDS": "60",
    "POWERTOOLS_METRICS_DISABLED": "true",
}
INTEGER_FIELDS = ("max_tokens", "max_completion_tokens", "n", "seed", "top_logprobs", "model_id")
TOP_LEVEL = (
    "model",
    "messages",
    "models",
    "provider",
    "model_id",
    "temperature",
    "top_p",
    "frequency_penalty",
    "presence_penalty",
    *INTEGER_FIELDS,
    "stop",
    "stream",
    "stream_options",
    "tools",
    "tool_choice",
    "response_format",
    "logit_bias",
    "logprobs",
    "user",
    "metadata",
    "service_tier",
    "store",
    "parallel_tool_calls",
    "modalities",
    "reasoning_effort",
    "prediction",
    "audio",
    "web_search_options",
    "x_unknown",
)
MESSAGE_KEYS = ("role", "content", "name", "tool_calls", "tool_call_id", "function_call", "refusal", "audio")
PART_TYPES = ("text", "image_url", "input_audio", "file", "refusal", "x-unknown")
PART_KEYS = ("type", "text", "image_url", "input_audio", "file", "refusal", "cache_control")

# --- strategies ------------------------------------------------------------------------------


def message_shapes(noisy: bool) -> tuple[st.SearchStrategy[Any], st.SearchStrategy[Any], st.SearchStrategy[Any]]:
    """Messages, tools and function objects: noisy ones probe the errors, clean ones the code behind validate()."""
    function = plausible(
        ("name", "arguments", "parameters"),
        {"name": st.text(max_size=8), "arguments": st.text(), "parameters": st.just({"type": "object"})},
        required=("name", "arguments"),
        noisy=noisy,
    )
    tool_call = plausible(
        ("id", "type", "function"),
        {"id": st.text(max_size=8), "type": st.just("function"), "function": function},
        required=("id", "type", "function"),
        noisy=noisy,
    )
    url = st.sampled_from(["https://example.com/a.png", "data:image/png;base64,iVBORw0KGgo=", "not a url"])
    part = plausible(
        PART_KEYS,
        {
            "type": st.sampled_from(PART_TYPES),
            "text": st.text(max_size=20),
            "image_url": plausible(("url", "detail"), {"url": url, "detail": st.just("low")}, ("url",), noisy),
            "input_audio": plausible(("data", "format"), {"format": st.just("wav")}, ("data", "format"), noisy),
            "file": plausible(("file_data", "file_id", "filename"), {"file_data": url}, noisy=noisy),
            "refusal": st.text(max_size=8),
            "cache_control": st.just({"type": "ephemeral"}),
        },
        required=("type",),
        noisy=noisy,
    )
    if not noisy:  # a known type with its payload; unknown types pass as they are
        part = part.filter(lambda p: p["type"] not in PART_PAYLOAD or PART_PAYLOAD[p["type"]] in p)
    message = plausible(
        MESSAGE_KEYS,
        {
            "role": st.sampled_from(["system", "developer", "user", "assistant", "tool", "function"]),
            "content": st.text(max_size=30) | st.lists(part, max_size=3),
            "name": st.text(max_size=8),
            "tool_calls": st.lists(tool_call, max_size=2),
            "tool_call_id": st.text(max_size=8),
            "function_call": st.just({"name": "f", "arguments": "{}"}),
            "refusal": st.text(max_size=8),
            "audio": st.just({"id": "audio_1"}),
        },
        required=("role", "content"),
        noisy=noisy,
    )
    tool = plausible(("type", "function"), {"type": st.just("function"), "function": function}, ("type",), noisy)
    return message, tool, function


PART_PAYLOAD = {"text": "text", "image_url": "image_url", "input_audio": "input_audio", "file": "file"}
PART_PAYLOAD["refusal"] = "refusal"
MESSAGE, TOOL, FUNCTION = message_shapes(noisy=True)
CLEAN_MESSAGE, CLEAN_TOOL, CLEAN_FUNCTION = message_shapes(noisy=False)
PLAUSIBLE_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "model": st.just("gateway-echo"),
    "messages": st.lists(MESSAGE, min_size=1, max_size=4) | st.lists(CLEAN_MESSAGE, min_size=1, max_size=4),
    "models": st.lists(st.sampled_from(["gateway-echo", "", "no-such-model"]), max_size=2),
    "provider": plausible(
        ("order", "only", "ignore", "sort", "allow_fallbacks", "max_price"),
        {
            "sort": st.sampled_from(["price", "latency", "fast"]),
            "allow_fallbacks": st.booleans(),
            "max_price": plausible(("prompt", "completion"), {"prompt": BIG, "completion": st.floats(-1, 100)}),
        },
    ),
    "temperature": st.floats(-1, 3),
    "max_tokens": st.integers(-2, 50) | BIG,
    "n": st.integers(0, 3) | BIG,
    "seed": BIG,
    "top_logprobs": st.integers(-1, 22) | BIG,
    "stop": st.text(max_size=4) | st.lists(st.text(max_size=4), max_size=5),
    "stream": st.booleans(),
    "stream_options": plausible(("include_usage",), {"include_usage": st.booleans()}),
    "tools": st.lists(TOOL, max_size=2) | st.lists(CLEAN_TOOL, max_size=2),
    "tool_choice": st.sampled_from(["auto", "none", "required"])
    | plausible(("type", "function"), {"type": st.just("function"), "function": FUNCTION | CLEAN_FUNCTION}),
    "response_format": plausible(("type", "json_schema"), {"type": st.sampled_from(["json_object", "json_schema"])}),
    "logit_bias": st.dictionaries(st.text(max_size=5), st.integers(-150, 150) | ANY, max_size=2),
    "metadata": st.dictionaries(st.text(max_size=5), st.text(max_size=5) | ANY, max_size=2),
}
VALID = {"model": "gateway-echo", "messages": [{"role": "user", "content": "hi"}]}


@st.composite
def mutated(draw: st.DrawFn, messages: bool = False) -> dict[str, Any]:
    """A valid body with some fields set to plausible values or any JSON values, or removed;
    with `messages`, its messages are drawn too (roles, keys and content parts of every kind)."""
    body: dict[str, Any] = {"model": VALID["model"], "messages": [dict(VALID["messages"][0])]}
    if messages:
        body["messages"] = draw(PLAUSIBLE_FIELDS["messages"])
    for name in draw(st.lists(st.sampled_from(TOP_LEVEL), max_size=4, unique=True)):
        choice = draw(st.sampled_from(["plausible"] * 4 + ["any"] * 4 + ["remove"]))
        if choice == "remove":
            body.pop(name, None)
        elif choice == "plausible" and name in PLAUSIBLE_FIELDS:
            body[name] = draw(PLAUSIBLE_FIELDS[name])
        else:
            body[name] = draw(ANY)
    return body


BODIES = st.one_of(mutated(), mutated(messages=True), mutated(messages=True), json_values())


# --- validate() alone ------------------------------------------------------------------------


def root(param: str) -> str:
    return param.split(".", 1)[0].split("[", 1)[0]


def check(body: Any) -> ChatRequest | GatewayError:
    """validate(body), then everything that reads what it accepts unchecked (token counts, routing needs,
    the built-in model, the Anthropic and Bedrock translations); only a 400 naming a field may be raised."""
    from gateway import tokens
    from gateway.providers.builtin import Generation
    from gateway.routing.resolve import Needs, _preferences, by_model_id
    from gateway.upstream import UpstreamError
    from gateway.wire.anthropic.request_out import to_anthropic
    from gateway.wire.converse.request import converse_request

    try:
        chat = validate(body)
    except GatewayError as error:
        assert error.status == 400 and error.type == "invalid_request_error", error.body()
        assert error.message
        if isinstance(body, dict):
            assert error.param, f"no param for {error.message!r}"
            assert root(error.param) in body or error.message.startswith("Missing required"), error.param
        return error
    assert isinstance(body, dict) and chat.body is body
    for name in INTEGER_FIELDS:
        assert body.get(name) is None or type(body[name]) is int, (name, body[name])
    # What runs on an accepted body before and while the built-in model answers it:
    tokens.count_messages(body["messages"])
    Needs.of(body)
    Generation(body)
    for translate in (to_anthropic, converse_request):
        with contextlib.suppress(UpstreamError):  # what Anthropic or Bedrock cannot express: a 400 later
            translate(body)
    try:
        _preferences(body)
        by_model_id(body.get("model_id"))
    except GatewayError as error:  # only the catalog lookup of an unknown model_id may still refuse
        assert error.status == 404 and error.param == "model_id", error.body()
    return chat


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(BODIES)
def test_validate_answers_a_request_or_a_400_naming_the_field(body: Any) -> None:
    check(body)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(INTEGER_FIELDS), st.integers(1, 20))
def test_an_integral_number_is_an_integer(name: str, value: int) -> None:
    body = {**VALID, name: float(value)}
    assert isinstance(check(body), ChatRequest)
    assert body[name] == value and type(body[name]) is int
    fraction = {**VALID, name: value + 0.5}
    error = check(fraction)
    assert isinstance(error, GatewayError) and error.param == name


@pytest.mark.parametrize(
    "value",
    [math.nan, math.inf, -math.inf, 10**5000, -(10**5000), True],
    ids=["nan", "inf", "-inf", "huge", "-huge", "true"],
)
@pytest.mark.parametrize("name", ["temperature", "top_p", "max_tokens", "n", "seed", "top_logprobs", "model_id"])
def test_numbers_json_cannot_carry_are_still_a_400(name: str, value: Any) -> None:
    error = check({**VALID, name: value})
    if name == "model_id" and isinstance(value, int) and not isinstance(value, bool):
        assert isinstance(error, ChatRequest)  # any integer names a model_id; an unknown one is a 404 later
        return
    assert isinstance(error, GatewayError) and error.param == name
    assert len(error.message) < 300


# --- the whole app, in process -----------------------------------------------------------------


@pytest.fixture(scope="module")
def app_client(dynamodb_server: tuple[Any, dict[str, str]]) -> Iterator[Any]:
    """local_app() on tables of its own on the session's moto server, with a key whose limits stay out of
    the way."""
    from starlette.testclient import TestClient

    with own_tables(dynamodb_server[1], TABLES, **ENV):
        from gateway.accounts import keys
        from gateway.local.app import local_app

        key, _ = keys.create(owner="fuzz@example.com", name="fuzz", **E2E_KEY_FIELDS)
        with TestClient(local_app(), headers={"authorization": f"Bearer {key}"}) as client:
            yield client


def assert_not_5xx(response: Any, unified: bool = False) -> None:
    """No 5xx but an honest 503, and every error in its route's shape (the unified API has its own)."""
    assert response.headers["x-request-id"]
    if response.status_code < 400:
        return
    body = response.json()
    if unified:
        validate_unified_error(body, response.status_code)
        no_provider = "retry_after" in body  # the 503 of a request whose preferences rule out every provider
    else:
        assert set(body["error"]) >= {"message", "type", "param", "code"}
        no_provider = body["error"]["code"] == "no_provider_available"
    if response.status_code == 503 and no_provider:
        return  # `provider.only` or `ignore` can rule out every provider: a true answer, not a fault
    assert response.status_code < 500, response.text


JSON_BODIES = st.one_of(mutated(), mutated(messages=True))


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(body=JSON_BODIES)
def test_the_app_never_answers_a_fuzzed_body_with_a_5xx(app_client: Any, body: dict[str, Any]) -> None:
    assert_not_5xx(app_client.post("/v1/chat/completions", json=body))


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(body=JSON_BODIES)
def test_the_unified_route_never_answers_a_fuzzed_body_with_a_5xx(app_client: Any, body: dict[str, Any]) -> None:
    if body.get("model") == VALID["model"] and not isinstance(body.get("model_id"), int | float):
        body.pop("model")  # the unified API's clients name a model_id (or none) rather than a model
    assert_not_5xx(app_client.post("/api/chat", json=body), unified=True)


def test_the_app_answers_a_valid_body(app_client: Any) -> None:
    """The fuzzing above is only worth something if a valid body gets through to the model."""
    response = app_client.post("/v1/chat/completions", json={**VALID, "max_tokens": 100.0, "n": 2.0})
    assert response.status_code == 200, response.text
    assert len(response.json()["choices"]) == 2
