"""Request validation end to end: every 400 of shared/seeds/003 names its parameter, plus malformed
JSON, wrong types, the body size limit, wrong methods and unknown routes and models."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
from fake_upstream import FakeUpstream
from openapi import validate_error

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


@pytest.mark.parametrize(("label", "body", "param"), SEED_003 + WRONG_TYPES, ids=[c[0] for c in SEED_003 + WRONG_TYPES])
def test_invalid_request_names_the_parameter(
    http: httpx.Client, fake: FakeUpstream, label: str, body: dict[str, Any], param: str
) -> None:
    before = len(fake.records)
    assert_400(http.post("/chat/completions", json=body), param)
    assert len(fake.records) == before, "an invalid request reached the upstream"


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
