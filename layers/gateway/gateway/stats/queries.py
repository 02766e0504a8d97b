"""Read helpers for the statistics routes: each costs a fixed number of DynamoDB calls whatever the traffic.

- a key's days of one month: one Query on its partition, `sk BETWEEN DAY#<first> AND DAY#<last>`
  (at most 31 small items, so never a second page);
- a key's months: one Query, `sk begins_with MONTH#` (one item a month: a page holds decades);
- a shared (gateway-wide, model or provider) counter over several days: one BatchGetItem for
  every 100 of its day x SHARDS shard items, so a month of the gateway is at most 10 calls.

The figures are sums of the counters settlement writes, so they move exactly with what was
billed. Money leaves here as Decimal (stats/present.py renders it).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import date
from typing import Any

from gateway.config import settings
from gateway.stats import counters
from gateway.stats.counters import FIELDS, SHARDS
from gateway.storage import dynamo, schema

BATCH_LIMIT = 100  # keys per BatchGetItem
BATCH_RETRIES = 5  # rounds for keys DynamoDB leaves unprocessed under throttling


def empty() -> dict[str, Any]:
    return counters._totals([])


def add(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    return {name: a[name] + b[name] for name in FIELDS}


def total(items: Iterable[dict[str, Any]]) -> dict[str, Any]:
    out = empty()
    for item in items:
        out = add(out, item)
    return out


# --- per key ----------------------------------------------------------------------------------


def _query_all(**kwargs: Any) -> list[dict[str, Any]]:
    """A Query's items; the ranges used here fit one page, the loop only guards correctness."""
    items: list[dict[str, Any]] = []
    while True:
        response = dynamo.client().query(**kwargs)
        items += [dynamo.from_item(i) for i in response["Items"]]
        if "LastEvaluatedKey" not in response:
            return items
        kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def key_days(key_id: str, first: str, last: str) -> dict[str, dict[str, Any]]:
    """The key's daily counters from `first` to `last` (inclusive, "YYYY-MM-DD"): one Query."""
    items = _query_all(
        TableName=settings().usage_table,
        KeyConditionExpression="pk = :pk AND sk BETWEEN :lo AND :hi",
        ExpressionAttributeValues={
            ":pk": {"S": schema.key_pk(key_id)},
            ":lo": {"S": schema.day_sk(first)},
            ":hi": {"S": schema.day_sk(last)},
        },
        ConsistentRead=True,  # settled a moment ago means shown now
    )
    return {i["sk"].removeprefix(schema.day_sk("")): counters._totals([i]) for i in items}


def key_months(key_id: str) -> dict[str, dict[str, Any]]:
    """Every monthly counter of the key (they do not expire), by "YYYY-MM": one Query."""
    items = _query_all(
        TableName=settings().usage_table,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :month)",
        ExpressionAttributeValues={":pk": {"S": schema.key_pk(key_id)}, ":month": {"S": schema.month_sk("")}},
        ConsistentRead=True,
    )
    return {i["sk"].removeprefix(schema.month_sk("")): counters._totals([i]) for i in items}


def key_today(key_id: str, day: date) -> dict[str, Any]:
    """The key's counters for one day: one GetItem."""
    return counters.read_key(key_id, day.isoformat())


# --- shared (gateway-wide, per model, per provider) ------------------------------------------


def shared_days(scope: str, days: list[str]) -> dict[str, dict[str, Any]]:
    """A sharded counter for each of `days`: ceil(len(days) x SHARDS / 100) BatchGetItem calls."""
    table = settings().usage_table
    day_of = {schema.stats_pk(scope, day, n): day for day in days for n in range(SHARDS)}
    keys = [{"pk": {"S": pk}, "sk": {"S": schema.COUNTER}} for pk in day_of]
    found: dict[str, list[dict[str, Any]]] = {day: [] for day in days}
    for start in range(0, len(keys), BATCH_LIMIT):
        pending: dict[str, Any] = {table: {"Keys": keys[start : start + BATCH_LIMIT]}}
        for attempt in range(BATCH_RETRIES):
            response = dynamo.client().batch_get_item(RequestItems=pending)
            for raw in response["Responses"].get(table, []):
                item = dynamo.from_item(raw)
                found[day_of[item["pk"]]].append(item)
            pending = response.get("UnprocessedKeys") or {}
            if not pending:
                break
            time.sleep(0.05 * 2**attempt)  # throttled: back off, then ask for the rest only
        else:
            raise RuntimeError(f"DynamoDB left statistics of {scope} unread after {BATCH_RETRIES} attempts")
    return {day: counters._totals(items) for day, items in found.items()}
