"""Usage counters, built from settled requests' tallies (stats/tallies.py) and read with a fixed number of
calls whatever the traffic.

Per key: one item a day and one a month. Gateway-wide, per model and per provider: one counter a
day split into SHARDS items, each in a partition of its own (the shard is part of the partition
key), each batch of tallies adding to one shard at random, summed on read with one BatchGetItem.
The counters are written once a batch, not once a request, so their write rate is the stream's
batches', far below a partition's 1,000 WCU a second (README: "Scale").
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from gateway.config import settings
from gateway.storage import dynamo, schema

SHARDS = 32
FIELDS = (
    "requests",
    "errors",
    "prompt_tokens",
    "completion_tokens",
    "cost",
    "provider_cost",
    "latency_ms",
    "ttft_ms",
    "streams",
)
MONEY = ("cost", "provider_cost")  # USD: what keys were charged, and what the providers charge the operator
COUNTER_TTL_DAYS = 400  # daily counters expire; monthly ones stay


@dataclass(frozen=True, slots=True)
class Sample:
    """One request, as counters add it up."""

    prompt_tokens: int
    completion_tokens: int
    cost: Decimal
    error: bool
    latency_ms: int
    ttft_ms: int | None = None  # streams only
    provider_cost: Decimal = Decimal(0)  # what the provider charges the operator for it (the catalog's cost)

    def values(self) -> dict[str, Any]:
        return {
            "requests": 1,
            "errors": int(self.error),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost": self.cost,
            "provider_cost": self.provider_cost,
            "latency_ms": self.latency_ms,
            "ttft_ms": self.ttft_ms or 0,
            "streams": int(self.ttft_ms is not None),
        }


def add(pk: str, sk: str, totals: dict[str, Any], expires_at: int | None) -> dict[str, Any]:
    """An update adding `totals` (by FIELDS) to one counter item."""
    values = {f":{name}": totals[name] for name in FIELDS}
    expression = "ADD " + ", ".join(f"{name} :{name}" for name in FIELDS)
    if expires_at:
        expression += " SET expires_at = :exp"
        values[":exp"] = expires_at
    return {
        "TableName": settings().usage_table,
        "Key": {"pk": {"S": pk}, "sk": {"S": sk}},
        "UpdateExpression": expression,
        "ExpressionAttributeValues": dynamo.to_item(values),
    }


def _totals(items: list[dict[str, Any]]) -> dict[str, Any]:
    totals: dict[str, Any] = {name: Decimal(0) if name in MONEY else 0 for name in FIELDS}
    for item in items:
        for name in FIELDS:
            raw = item.get(name, 0)
            totals[name] += Decimal(raw) if name in MONEY else int(raw)
    return totals


def read_key(key_id: str, period: str) -> dict[str, Any]:
    """A key's counters for a day ("YYYY-MM-DD") or a month ("YYYY-MM"): one GetItem."""
    item = dynamo.client().get_item(TableName=settings().usage_table, Key=schema.usage_key(key_id, period)).get("Item")
    return _totals([dynamo.from_item(item)] if item else [])


def read_shared_many(scopes: list[str], day: str) -> dict[str, dict[str, Any]]:
    """Counters of several scopes for a day: one BatchGetItem per 100 shard items, whatever the traffic."""
    table = settings().usage_table
    keys = [(scope, schema.stats_key(scope, day, n)) for scope in scopes for n in range(SHARDS)]
    found: dict[str, list[dict[str, Any]]] = {scope: [] for scope in scopes}
    for start in range(0, len(keys), 100):
        pending: dict[str, Any] = {table: {"Keys": [k for _, k in keys[start : start + 100]]}}
        while pending:
            response = dynamo.client().batch_get_item(RequestItems=pending)
            for raw in response["Responses"].get(table, []):
                item = dynamo.from_item(raw)
                found[schema.stats_scope_of(item["pk"])].append(item)
            pending = response.get("UnprocessedKeys") or {}
    return {scope: _totals(items) for scope, items in found.items()}


def read_shared(scope: str, day: str) -> dict[str, Any]:
    """A gateway-wide, model or provider counter for a day: one BatchGetItem of its SHARDS items."""
    return read_shared_many([scope], day)[scope]


def summary(totals: dict[str, Any]) -> dict[str, Any]:
    """Derived figures every statistics view shows."""
    requests = totals["requests"]
    return {
        **totals,
        "total_tokens": totals["prompt_tokens"] + totals["completion_tokens"],
        "avg_latency_ms": round(totals["latency_ms"] / requests) if requests else 0,
        "avg_ttft_ms": round(totals["ttft_ms"] / totals["streams"]) if totals["streams"] else None,
        "success_rate": round(1 - totals["errors"] / requests, 4) if requests else None,
    }
