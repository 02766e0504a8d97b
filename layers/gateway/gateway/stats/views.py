"""Read helpers for the statistics routes: each costs a fixed number of DynamoDB calls whatever the traffic.

- a key's days of one month: one Query on its partition, `sk BETWEEN DAY#<first> AND DAY#<last>`
  (at most 31 small items, so never a second page);
- a key's months: one Query, `sk begins_with MONTH#` (one item a month: a page holds decades);
- a shared (gateway-wide, model or provider) counter over several days: one BatchGetItem for
  every 100 of its day x SHARDS shard items, so a month of the gateway is at most 10 calls.

The figures are sums of the counters settlement writes, so they move exactly with what was
billed. Money leaves here as Decimal; `money()` renders it as a plain decimal string.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from gateway.config import settings
from gateway.stats import counters
from gateway.stats.counters import FIELDS, SHARDS
from gateway.storage import dynamo, schema

BATCH_LIMIT = 100  # keys per BatchGetItem
BATCH_RETRIES = 5  # rounds for keys DynamoDB leaves unprocessed under throttling


def number(value: Any) -> int | float:
    """USD as a JSON number, for OpenRouter's shapes (/v1/key, /v1/credits, /v1/generation): typed
    clients add these up. The float's shortest form is the decimal's own up to 15 digits."""
    d = Decimal(value)
    return int(d) if d == d.to_integral_value() else float(d)


def money(value: Any) -> str:
    """Exact USD as a plain decimal string ("0.000125", never "1.25E-4", never a float)."""
    d = Decimal(value)
    return format(d.normalize(), "f") if d else "0"


def empty() -> dict[str, Any]:
    return counters._totals([])


def add(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    return {name: a[name] + b[name] for name in FIELDS}


def total(items: Iterable[dict[str, Any]]) -> dict[str, Any]:
    out = empty()
    for item in items:
        out = add(out, item)
    return out


def present(totals: dict[str, Any]) -> dict[str, Any]:
    """A period's figures as the API shows them (sums of latencies become averages; money a string)."""
    s = counters.summary(totals)
    return {
        "requests": s["requests"],
        "errors": s["errors"],
        "streams": s["streams"],
        "prompt_tokens": s["prompt_tokens"],
        "completion_tokens": s["completion_tokens"],
        "total_tokens": s["total_tokens"],
        "cost": money(s["cost"]),
        "avg_latency_ms": s["avg_latency_ms"],
        "avg_ttft_ms": s["avg_ttft_ms"],
        "success_rate": s["success_rate"],
    }


def point(day: str, totals: dict[str, Any]) -> dict[str, Any]:
    """One day of a chart."""
    return {
        "date": day,
        "requests": totals["requests"],
        "tokens": totals["prompt_tokens"] + totals["completion_tokens"],
        "cost": money(totals["cost"]),
        "errors": totals["errors"],
    }


# --- calendar ---------------------------------------------------------------------------------


def today(now: float | None = None) -> date:
    return datetime.fromtimestamp(now if now is not None else time.time(), UTC).date()


def month_days(day: date) -> list[str]:
    """Every day of `day`'s month up to and including `day` (a chart of the month so far)."""
    return [day.replace(day=d).isoformat() for d in range(1, day.day + 1)]


def month_bounds(day: date) -> tuple[str, str]:
    last = calendar.monthrange(day.year, day.month)[1]
    return day.replace(day=1).isoformat(), day.replace(day=last).isoformat()


def week_start(day: date) -> date:
    """Monday of `day`'s UTC week (OpenRouter's usage_weekly)."""
    return day - timedelta(days=day.weekday())


def day_start(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


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
