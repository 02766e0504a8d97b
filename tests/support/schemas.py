"""Schemas clients send for structured output, as pydantic models, and the check that a document is valid
against a schema: what the built-in model's sampler tests (tests/unit) and its SDK tests (tests/e2e) share."""

from __future__ import annotations

import datetime
import enum
import uuid
from typing import Any, Literal

import jsonschema
from pydantic import BaseModel, Field, HttpUrl


def assert_valid(document: Any, schema: Any) -> None:
    """Valid against `schema`, formats included (date-time, email, uuid, ...), under the schema's own draft."""
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    cls(schema, format_checker=cls.FORMAT_CHECKER).validate(document)


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
