"""A key's usage counters, kept on the write path by settlement: one GetItem per period read."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from gateway.config import settings
from gateway.storage import dynamo

FIELDS = ("requests", "prompt_tokens", "completion_tokens", "cost", "errors", "latency_ms")


def counters(key_id: str, period: str) -> dict[str, Any]:
    """Counters for `period`: "YYYY-MM-DD" (a day) or "YYYY-MM" (a month); zeros when nothing was used."""
    sk = f"DAY#{period}" if len(period) == 10 else f"MONTH#{period}"
    item = (
        dynamo.client()
        .get_item(TableName=settings().usage_table, Key={"pk": {"S": f"KEY#{key_id}"}, "sk": {"S": sk}})
        .get("Item")
    )
    values = dynamo.from_item(item) if item else {}
    result: dict[str, Any] = {"period": period}
    for name in FIELDS:
        raw = values.get(name, 0)
        result[name] = Decimal(raw) if name == "cost" else int(raw)
    result["total_tokens"] = result["prompt_tokens"] + result["completion_tokens"]
    return result
