"""The built-in model's structured output: `response_format` (json_schema, json_object) and forced tool
calls answer documents valid against the caller's schema, whole and streamed, with exact token counts.

These check the sampler against hand-written and pydantic-generated schemas (and random ones);
tests/e2e/test_builtin_structured_e2e.py drives the openai SDK's `parse` helpers against the real gateway.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.lib._pydantic import to_strict_json_schema
from pydantic import BaseModel

from gateway import tokens
from gateway.providers.builtin import Generation
from gateway.providers.sampler import sample
from tests.support.schemas import HAND_WRITTEN, Event, Node, Tree, Weather, assert_valid

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
