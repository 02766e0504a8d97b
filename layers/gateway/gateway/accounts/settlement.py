"""Settlement: exactly once, one transaction: release the reservation, charge the cost, count the usage.

The reservation's entry in the account item is the exactly-once guard: the transaction
removes it on condition that it exists, so a retried settlement, or the sweeper racing a
slow request, cannot charge or count twice. The request id is also the transaction's
idempotency token, so the SDK's own retries of the same call are absorbed too.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from gateway.accounts import account
from gateway.accounts.admission import Reservation
from gateway.config import settings
from gateway.storage import dynamo

COUNTER_DAYS = 400  # daily counters expire (TTL) after this; monthly ones are kept


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cost: Decimal
    error: bool
    latency_ms: int


def _counter(key_id: str, sk: str, usage: Usage, charge: Decimal, expires_at: int | None) -> dict[str, Any]:
    values: dict[str, Any] = {
        ":one": 1,
        ":p": usage.prompt_tokens,
        ":c": usage.completion_tokens,
        ":cost": charge,
        ":err": 1 if usage.error else 0,
        ":lat": usage.latency_ms,
    }
    expression = "ADD requests :one, prompt_tokens :p, completion_tokens :c, cost :cost, errors :err, latency_ms :lat"
    if expires_at:
        expression += " SET expires_at = :exp"
        values[":exp"] = expires_at
    return {
        "Update": {
            "TableName": settings().usage_table,
            "Key": {"pk": {"S": f"KEY#{key_id}"}, "sk": {"S": sk}},
            "UpdateExpression": expression,
            "ExpressionAttributeValues": dynamo.to_item(values),
        }
    }


def _release(reservation: Reservation, charge: Decimal, refund_free: bool, uncollected: Decimal) -> dict[str, Any]:
    """Remove the reservation and move the balance by what was held minus what is charged."""
    sets = ["balance = balance + :delta"]
    values: dict[str, Any] = {":delta": reservation.amount - charge}
    condition = "attribute_exists(#res.#rid)"
    if charge > reservation.amount:  # the prompt was longer than estimated: take the rest only if it is there
        condition += " AND balance >= :owed"
        values[":owed"] = charge - reservation.amount
    if refund_free:
        sets.append("free_used = free_used - :one")
        condition += " AND #month = :m"
        values.update({":one": 1, ":m": reservation.month})
    if uncollected:
        sets.append("uncollected = if_not_exists(uncollected, :zero) + :unc")
        values.update({":unc": uncollected, ":zero": Decimal(0)})
    return {
        "Update": {
            "TableName": settings().usage_table,
            "Key": account.key(reservation.key_id),
            "UpdateExpression": "SET " + ", ".join(sets) + " REMOVE #res.#rid",
            "ConditionExpression": condition,
            "ExpressionAttributeNames": {
                "#res": "reservations",
                "#rid": reservation.request_id,
                **({"#month": "month"} if refund_free else {}),
            },
            "ExpressionAttributeValues": dynamo.to_item(values),
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
    }


def _token(request_id: str, charge: Decimal, refund_free: bool) -> str:
    """Idempotency token: the same settlement retried is absorbed; a corrected one is a new call."""
    return hashlib.sha256(f"{request_id}|{charge}|{refund_free}".encode()).hexdigest()[:36]


def settle_sync(reservation: Reservation, usage: Usage, now: float | None = None) -> Decimal | None:
    """Charge `usage.cost` (0 for a free request) and count the request; None if it was already settled."""
    now = now or time.time()
    charge = Decimal(0) if reservation.free else usage.cost
    # A free request that produced nothing gives its slot back, like a paid one is not billed.
    refund_free = reservation.free and usage.prompt_tokens == 0 and usage.completion_tokens == 0
    uncollected = Decimal(0)
    for _ in range(2):
        items = [
            _release(reservation, charge, refund_free, uncollected),
            _counter(reservation.key_id, f"DAY#{account.day_of(now)}", usage, charge, int(now) + COUNTER_DAYS * 86400),
            _counter(reservation.key_id, f"MONTH#{account.month_of(now)}", usage, charge, None),
        ]
        try:
            dynamo.client().transact_write_items(
                TransactItems=items, ClientRequestToken=_token(reservation.request_id, charge, refund_free)
            )
            return charge
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise
            reason = (exc.response.get("CancellationReasons") or [{}])[0]
            if reason.get("Code") != "ConditionalCheckFailed":
                raise
            old = dynamo.from_item(reason.get("Item") or {})
            if reservation.request_id not in (old.get("reservations") or {}):
                return None  # settled already (a retry) or released by the sweeper
            if refund_free and old.get("month") != reservation.month:
                refund_free = False  # the month rolled over meanwhile: its free requests are fresh anyway
                continue
            # Not enough credit for the part of the cost beyond the reservation: take what is there.
            available = max(Decimal(old.get("balance", 0)), Decimal(0))
            uncollected = charge - reservation.amount - available
            charge = reservation.amount + available
    raise RuntimeError(f"settlement of {reservation.request_id} did not converge")


async def settle(reservation: Reservation, usage: Usage) -> Decimal | None:
    return await dynamo.call(settle_sync, reservation=reservation, usage=usage)
