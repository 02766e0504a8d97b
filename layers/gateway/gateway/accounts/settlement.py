"""Settlement: exactly once, one transaction: release the reservation, charge the cost, count the usage.

The reservation's entry in the account item is the exactly-once guard: the transaction
removes it on condition that it exists, so a retried settlement, or the sweeper racing a
slow request, cannot charge or count twice. The same transaction adds the key's day and
month counters, the sharded gateway, model and provider counters, and the generation
record, so statistics move exactly with what was billed.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import replace
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from gateway.accounts import account
from gateway.accounts.admission import Reservation
from gateway.config import settings
from gateway.stats import counters, generations
from gateway.stats.counters import Sample
from gateway.storage import dynamo


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


def settle_sync(
    reservation: Reservation,
    sample: Sample,
    model: str | None = None,
    provider: str | None = None,
    record: dict[str, Any] | None = None,
    now: float | None = None,
) -> Decimal | None:
    """Charge `sample.cost` (nothing for a free request) and count it; None if it was already settled."""
    now = now or time.time()
    day = account.day_of(now)
    expires = int(now) + counters.COUNTER_TTL_DAYS * 86400
    charge = Decimal(0) if reservation.free else sample.cost
    # A free request that produced nothing gives its slot back, as a paid one is not billed.
    refund_free = reservation.free and sample.prompt_tokens == 0 and sample.completion_tokens == 0
    uncollected = Decimal(0)
    for _ in range(2):
        billed = replace(sample, cost=charge)
        items = [_release(reservation, charge, refund_free, uncollected)]
        items += counters.key_items(reservation.key_id, day, billed, expires)
        if model:
            items += counters.shared_items(day, model, provider, billed, expires)
        if record:
            items.append(generations.put_item(reservation.key_id, {**record, "cost": charge}, now))
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


async def settle(
    reservation: Reservation,
    sample: Sample,
    model: str | None = None,
    provider: str | None = None,
    record: dict[str, Any] | None = None,
) -> Decimal | None:
    return await dynamo.call(
        settle_sync, reservation=reservation, sample=sample, model=model, provider=provider, record=record
    )
