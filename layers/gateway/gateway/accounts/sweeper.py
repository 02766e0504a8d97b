"""Releases reservations that a crashed or timed-out invocation never settled.

A reservation older than the chat function's timeout can no longer be settled by its
request, so its credit (or free request) goes back and the request is counted as an
error. The release is settlement itself, with nothing delivered, so a request that does
settle at the last moment and the sweeper cannot both count it.

It reads account items with a scan: it runs on a schedule, never on the request path.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from gateway.accounts import settlement
from gateway.accounts.admission import Reservation
from gateway.config import settings
from gateway.stats.counters import Sample
from gateway.storage import dynamo

DEFAULT_AGE_SECONDS = 960  # the chat function's 900 s timeout, and a minute to spare


def stale(now: float, age: float) -> list[Reservation]:
    found: list[Reservation] = []
    kwargs: dict[str, Any] = {
        "TableName": settings().usage_table,
        "FilterExpression": "sk = :account AND size(reservations) > :zero",
        "ProjectionExpression": "pk, reservations",
        "ExpressionAttributeValues": {":account": {"S": "ACCOUNT"}, ":zero": {"N": "0"}},
    }
    while True:
        page = dynamo.client().scan(**kwargs)
        for raw in page["Items"]:
            item = dynamo.from_item(raw)
            key_id = item["pk"].removeprefix("KEY#")
            for request_id, entry in (item.get("reservations") or {}).items():
                if int(entry["at"]) < now - age:
                    found.append(
                        Reservation(key_id, request_id, Decimal(entry["amount"]), bool(entry["free"]), entry["month"])
                    )
        if "LastEvaluatedKey" not in page:
            return found
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def sweep(age: float = DEFAULT_AGE_SECONDS, now: float | None = None) -> dict[str, Any]:
    now = now or time.time()
    released = 0
    for reservation in stale(now, age):
        nothing = Sample(0, 0, Decimal(0), error=True, latency_ms=int(age * 1000))
        if settlement.settle_sync(reservation, nothing, now=now) is not None:
            released += 1
    return {"released": released}
