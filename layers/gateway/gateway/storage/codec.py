"""DynamoDB's typed attribute values (the scalar, map and list types the gateway stores), both ways, with
numbers as Decimal so money never passes through float.

Written here rather than taken from boto3 (`boto3.dynamodb.types`): importing that imports botocore,
which the request path does without (storage/client.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any


def encode(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, bool):  # before int: a bool is an int
        return {"BOOL": value}
    if isinstance(value, int | Decimal):
        return {"N": str(value)}
    if value is None:
        return {"NULL": True}
    if isinstance(value, Mapping):
        return {"M": {str(k): encode(v) for k, v in value.items()}}
    if isinstance(value, list | tuple):
        return {"L": [encode(v) for v in value]}
    raise TypeError(f"no DynamoDB type for {type(value).__name__}")  # float among them: money is Decimal


def decode(typed: Mapping[str, Any]) -> Any:
    ((kind, value),) = typed.items()
    if kind == "S":
        return value
    if kind == "N":
        return Decimal(value)
    if kind == "M":
        return {k: decode(v) for k, v in value.items()}
    if kind == "L":
        return [decode(v) for v in value]
    if kind == "BOOL":
        return bool(value)
    if kind == "NULL":
        return None
    raise TypeError(f"unknown DynamoDB type {kind}")


def to_item(values: Mapping[str, Any]) -> dict[str, Any]:
    """Typed attributes of `values`; a None value is left out (an absent attribute, not a NULL)."""
    return {k: encode(v) for k, v in values.items() if v is not None}


def from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: decode(v) for k, v in item.items()}
