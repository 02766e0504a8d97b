"""The built-in model's structured output: `response_format` (json_schema, json_object) and forced tool
calls answer documents valid against the caller's schema, whole and streamed, with exact token counts.

Unit tests check the sampler against hand-written and pydantic-generated schemas (and random ones);
end-to-end tests drive the openai SDK's `parse` helpers against the real gateway and `gateway-echo`.
"""

from __future__ import annotations

import datetime
import enum
import json
import uuid
from typing import Any, Literal

import httpx
import jsonschema
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.lib._pydantic import to_strict_json_schema
from pydantic import BaseModel, Field, HttpUrl

from gateway import tokens
from gateway.providers.builtin import Generation
from gateway.providers.sampler import sample
from tests.support.openapi import check_stream, validate_chat_completion


def assert_valid(document: Any, schema: Any) -> None:
    """Valid against `schema`, formats included (date-time, email, uuid, ...), under the schema's own draft."""
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    cls(schema, format_checker=cls.FORMAT_CHECKER).validate(document)


# --- schemas clients send ----------------------------------------------------------------------


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Node(BaseModel):
    """Recursive through a list and an optional field."""

    name: str
    children: list[Node] = []
    parent: Node | None = None


class Tree(BaseModel):
    left: Tree | None
    right: Tree | None
    value: int


class Event(BaseModel):
    title: str = Field(min_length=12, max_length=40)
    starts: datetime.datetime
    day: datetime.date
    at: datetime.time
    id: uuid.UUID
    url: HttpUrl
    attendees: int = Field(ge=3, le=9)
    score: float = Field(gt=0, lt=1)
    ratio: float = Field(gt=0.5)
    tags: set[str] = Field(min_length=3)
    pair: tuple[int, str]
    color: Color
    kind: Literal["talk", "workshop"]
    counts: dict[str, int]
    node: Node
    maybe: int | None = None
    tree: Tree


class Weather(BaseModel):
    city: str
    unit: Literal["c", "f"]
    days: int = Field(ge=1, le=14)


HAND_WRITTEN: dict[str, dict[str, Any]] = {
    "free object": {"type": "object"},
    "closed empty object": {"type": "object", "properties": {}, "additionalProperties": False},
    "map of integers": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 5}},
    "nested required": {
        "type": "object",
        "properties": {
            "person": {
                "type": "object",
                "properties": {"name": {"type": "string", "minLength": 30}, "age": {"type": "integer", "minimum": 18}},
                "required": ["name", "age"],
                "additionalProperties": False,
            },
            "emails": {"type": "array", "items": {"type": "string", "format": "email"}, "minItems": 2},
            "homepage": {"type": "string", "format": "uri"},
            "at": {"type": "string", "format": "date-time"},
        },
        "required": ["person", "emails"],
        "additionalProperties": False,
    },
    "numbers": {
        "type": "object",
        "properties": {
            "negative": {"type": "integer", "maximum": -3},
            "between": {"type": "number", "exclusiveMinimum": 2.5, "exclusiveMaximum": 3},
            "step": {"type": "integer", "minimum": 7, "multipleOf": 5},
        },
        "required": ["negative", "between", "step"],
    },
    "exclusive minimum (draft 4)": {
        "$schema": "http://json-schema.org/draft-04/schema#",
        "type": "number",
        "minimum": 0,
        "exclusiveMinimum": True,
    },
    "enum, const, nullable": {
        "type": "object",
        "properties": {
            "level": {"enum": ["low", "high"]},
            "fixed": {"const": 42},
            "note": {"type": ["string", "null"], "maxLength": 3},
            "flag": {"type": "boolean"},
            "nothing": {"type": "null"},
        },
        "required": ["level", "fixed", "note", "flag", "nothing"],
    },
    "oneOf of distinct types": {
        "type": "object",
        "properties": {"id": {"oneOf": [{"type": "integer", "minimum": 1}, {"type": "string"}]}},
        "required": ["id"],
    },
    "allOf and definitions (draft 7)": {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "definitions": {
            "named": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
            "aged": {"type": "object", "properties": {"age": {"type": "integer", "minimum": 1}}, "required": ["age"]},
        },
        "allOf": [{"$ref": "#/definitions/named"}, {"$ref": "#/definitions/aged"}],
    },
    "tuples and bounded arrays": {
        "type": "object",
        "properties": {
            "point": {"type": "array", "prefixItems": [{"type": "number"}, {"type": "number"}], "items": False},
            "none": {"type": "array", "maxItems": 0},
            "unique": {"type": "array", "items": {"type": "integer"}, "minItems": 3, "uniqueItems": True},
        },
        "required": ["point", "none", "unique"],
    },
    "recursive linked list": {
        "$defs": {
            "item": {
                "type": "object",
                "properties": {
                    "value": {"type": "string"},
                    "next": {"anyOf": [{"$ref": "#/$defs/item"}, {"type": "null"}]},
                },
                "required": ["value", "next"],
                "additionalProperties": False,
            }
        },
        "$ref": "#/$defs/item",
    },
}
PYDANTIC: dict[str, dict[str, Any]] = {
    **{f"pydantic {m.__name__}": m.model_json_schema() for m in (Event, Node, Tree, Weather)},
    **{f"openai strict {m.__name__}": to_strict_json_schema(m) for m in (Event, Node, Tree, Weather)},
}


@pytest.mark.parametrize("schema", [*HAND_WRITTEN.values(), *PYDANTIC.values()], ids=[*HAND_WRITTEN, *PYDANTIC])
def test_sample_is_valid_and_deterministic(schema: dict[str, Any]) -> None:
    document = sample(schema, "what the user said")
    assert_valid(document, schema)
    assert sample(schema, "what the user said") == document


@pytest.mark.parametrize("model", [Event, Node, Tree, Weather])
def test_pydantic_accepts_the_sample(model: type[BaseModel]) -> None:
    model.model_validate_json(json.dumps(sample(model.model_json_schema(), "hello")))
    model.model_validate_json(json.dumps(sample(to_strict_json_schema(model), "hello")))


def test_a_free_form_object_echoes_the_prompt_as_before() -> None:
    assert sample({"type": "object"}, "find cats") == {"text": "find cats"}
    assert sample({"type": "object", "properties": {"q": {"type": "string"}}}, "find cats") == {"q": "find cats"}


# Random satisfiable schemas from the keywords the sampler honours.
_LEAVES = st.one_of(
    st.builds(
        lambda low, extra, fmt: (
            {"type": "string", "format": fmt} if fmt else {"type": "string", "minLength": low, "maxLength": low + extra}
        ),
        st.integers(0, 40),
        st.integers(0, 10),
        st.sampled_from([None, "date-time", "date", "email", "uuid", "ipv4"]),
    ),
    st.builds(
        lambda kind, low, gap, open_low, open_high: {
            "type": kind,
            "minimum" if not open_low else "exclusiveMinimum": low,
            "maximum" if not open_high else "exclusiveMaximum": low + gap,
        },
        st.sampled_from(["integer", "number"]),
        st.integers(-50, 50),
        st.integers(2, 20),
        st.booleans(),
        st.booleans(),
    ),
    st.just({"type": "boolean"}),
    st.just({"type": "null"}),
    st.lists(st.integers() | st.text(max_size=5), min_size=1, max_size=3, unique=True).map(lambda v: {"enum": v}),
    st.builds(lambda v: {"const": v}, st.integers() | st.text(max_size=5)),
)


def _extend(inner: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    props = st.dictionaries(st.text("abcdefgh", min_size=1, max_size=4), inner, max_size=4)
    return st.one_of(
        st.builds(
            lambda p, closed, data: {
                "type": "object",
                "properties": p,
                "required": sorted(data.draw(st.sets(st.sampled_from(sorted(p)))) if p else []),
                "additionalProperties": not closed,
            },
            props,
            st.booleans(),
            st.data(),
        ),
        st.builds(
            lambda items, low, extra: {"type": "array", "items": items, "minItems": low, "maxItems": low + extra},
            inner,
            st.integers(0, 4),
            st.integers(0, 3),
        ),
        st.builds(lambda a, b: {"anyOf": [a, b]}, inner, inner),
        st.builds(lambda a: {"anyOf": [a, {"type": "null"}]}, inner),
    )


SCHEMAS = st.recursive(_LEAVES, _extend, max_leaves=12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(SCHEMAS, st.text(max_size=20))
def test_random_schemas_get_valid_documents(schema: dict[str, Any], text: str) -> None:
    assert_valid(sample(schema, text), schema)


def test_odd_schemas_never_break_the_model() -> None:
    odd: list[Any] = [
        {"type": 7},
        {"properties": "x", "required": 3},
        {"$ref": "#/nowhere"},
        {"$ref": "#"},
        {"allOf": [{"$ref": "#"}]},
        {"type": "number", "minimum": "a", "multipleOf": 0},
        {"type": "array", "minItems": -4, "items": [1, 2]},
        {"const": 10**400},
        {"enum": []},
        [1, 2],
        True,
        False,
    ]
    for schema in odd:
        json.dumps(sample(schema, "x"))  # an answer, never an exception
        tool = {"type": "function", "function": {"name": "f", "parameters": schema}}
        Generation({"messages": [], "tools": [tool], "tool_choice": "required"})
        Generation({"messages": [], "response_format": {"type": "json_schema", "json_schema": {"schema": schema}}})


def _generation(**body: Any) -> Generation:
    return Generation({"messages": [{"role": "user", "content": "plan my week"}], **body})


def test_counts_stay_exact_for_json_answers() -> None:
    schema = to_strict_json_schema(Event)
    for gen in (
        _generation(response_format={"type": "json_schema", "json_schema": {"name": "e", "schema": schema}}),
        _generation(
            tools=[{"type": "function", "function": {"name": "e", "parameters": schema}}], tool_choice="required"
        ),
    ):
        text = "".join(gen.pieces)
        assert_valid(json.loads(text), schema)
        assert gen.completion_tokens == tokens.count(text) == len(gen.pieces)


def test_json_object_and_plain_text() -> None:
    assert json.loads("".join(_generation(response_format={"type": "json_object"}).pieces)) == {"text": "plan my week"}
    assert "".join(_generation(response_format={"type": "text"}).pieces) == "You said: plan my week"


# --- end to end: the openai SDK against the real gateway -----------------------------------------


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def test_parse_returns_the_pydantic_model_whole(client: openai.OpenAI) -> None:
    completion = client.chat.completions.parse(model="gateway-echo", messages=user("an event"), response_format=Event)
    message = completion.choices[0].message
    assert isinstance(message.parsed, Event)
    assert completion.choices[0].finish_reason == "stop"
    assert message.content is not None
    assert completion.usage is not None and completion.usage.completion_tokens == tokens.count(message.content)


def test_parse_through_the_beta_client_and_a_stream(client: openai.OpenAI) -> None:
    completion = client.beta.chat.completions.parse(model="gateway-echo", messages=user("hi"), response_format=Weather)
    assert isinstance(completion.choices[0].message.parsed, Weather)

    with client.chat.completions.stream(model="gateway-echo", messages=user("a tree"), response_format=Tree) as stream:
        final = stream.get_final_completion()
    parsed = final.choices[0].message.parsed
    assert isinstance(parsed, Tree)
    assert final.usage is not None
    assert final.usage.completion_tokens == tokens.count(final.choices[0].message.content or "")


def test_json_schema_and_json_object_over_raw_http(http: httpx.Client) -> None:
    schema = HAND_WRITTEN["nested required"]
    response_format = {"type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": False}}
    body = {"model": "gateway-echo", "messages": user("who"), "response_format": response_format}
    whole = http.post("/chat/completions", json=body).json()
    validate_chat_completion(whole)
    assert_valid(json.loads(whole["choices"][0]["message"]["content"]), schema)

    streamed = http.post("/chat/completions", json={**body, "stream": True})
    chunks = check_stream(streamed.text, "gateway-echo")
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert content == whole["choices"][0]["message"]["content"]
    assert chunks[-1]["usage"]["completion_tokens"] == whole["usage"]["completion_tokens"] == tokens.count(content)

    obj = http.post("/chat/completions", json={**body, "response_format": {"type": "json_object"}}).json()
    assert json.loads(obj["choices"][0]["message"]["content"]) == {"text": "who"}


def test_a_forced_tool_call_matches_the_tool_s_schema(client: openai.OpenAI) -> None:
    tool = openai.pydantic_function_tool(Weather, name="get_weather")
    completion = client.chat.completions.parse(
        model="gateway-echo",
        messages=user("weather in Paris"),
        tools=[tool],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    (call,) = completion.choices[0].message.tool_calls or ()
    assert call.function.name == "get_weather"
    assert isinstance(call.function.parsed_arguments, Weather)
    assert_valid(json.loads(call.function.arguments), tool["function"]["parameters"])


def test_a_required_tool_streams_arguments_valid_against_its_schema(client: openai.OpenAI) -> None:
    schema = HAND_WRITTEN["numbers"]
    tools = [
        {"type": "function", "function": {"name": "first", "parameters": {"type": "object"}}},
        {"type": "function", "function": {"name": "measure", "parameters": schema}},
    ]
    choice = {"type": "function", "function": {"name": "measure"}}
    stream = client.chat.completions.create(
        model="gateway-echo", messages=user("measure"), tools=tools, tool_choice=choice, stream=True
    )
    arguments, names, finish = "", set(), None
    for chunk in stream:
        for c in chunk.choices:
            for call in c.delta.tool_calls or ():
                arguments += (call.function.arguments or "") if call.function else ""
                names.update([call.function.name] if call.function and call.function.name else [])
            finish = c.finish_reason or finish
    assert names == {"measure"} and finish == "tool_calls"
    assert_valid(json.loads(arguments), schema)


def test_tool_choice_auto_still_answers_text(client: openai.OpenAI) -> None:
    tools = [openai.pydantic_function_tool(Weather)]
    completion = client.chat.completions.create(
        model="gateway-echo", messages=user("hello"), tools=tools, tool_choice="auto"
    )
    assert completion.choices[0].message.content == "You said: hello"
    assert not completion.choices[0].message.tool_calls
