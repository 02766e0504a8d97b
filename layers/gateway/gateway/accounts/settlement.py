"""Settlement: exactly once, one transaction: release the reservation, charge the cost, count the usage.

The reservation's entry in the account item is the exactly-once guard: the transaction
removes it on condition that it exists, so a retried settlement, or the sweeper racing a
slow request, cannot charge or count twice. The same transaction adds the key's day and
month counters, the sharded gateway, model and provider counters, and the generation
record, so statistics move exactly with what was billed.

Nothing is written off: a cost beyond the reservation (a provider that counts differently)
is charged all the same and may take the balance below zero, which admission then refuses
until a top-up covers it. Nothing served goes unbilled either: a settlement the store keeps
refusing is kept (`later`) and tried again with the process's next request (`catch_up`), and
a reservation that no process ever settles is charged in full by the sweeper.

The key's minute window is corrected to the tokens actually used, while that minute lasts, so
honest callers are limited by their usage, not by the bound.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from gateway.accounts import account
from gateway.config import settings
from gateway.stats import counters, generations
from gateway.stats.counters import Sample
from gateway.storage import dynamo
from gateway.storage.schema import Reservation

ZERO = Decimal(0)


@dataclass(slots=True)
class _Terms:
    """What the release writes; each field narrowed when the account turns out to have moved on."""

    charge: Decimal
    refund_free: bool
    tokens: int  # added to the minute window (negative: the bound was above the usage); 0 once it has passed
    closed: dict[str, Any] | None = None  # the account, when the reservation's month has been rolled over


def _returned(gap: Decimal, refund: Decimal) -> Decimal:
    """How much of a closed month's refund (negative: an overrun) moves into the current balance.

    `gap` is the closed month's purchased credit that its open reservations still hold: the
    month carries min(purchased, what it has left), so a refund carries only up to the gap,
    and an overrun is taken from the new month only once the closed month's own credit is gone.
    """
    return max(gap, ZERO) - max(gap - refund, ZERO)


def _release(reservation: Reservation, terms: _Terms) -> dict[str, Any]:
    """Remove the reservation, release what it held less what is charged, and correct the window."""
    refund = reservation.amount - terms.charge
    sets = ["held = if_not_exists(held, :zero) - :held"]
    values: dict[str, Any] = {":held": reservation.amount, ":zero": ZERO}
    names = {"#res": "reservations", "#rid": reservation.request_id, "#month": "month"}
    condition = "attribute_exists(#res.#rid) AND #month = :m"
    if terms.closed is None:
        sets.append("balance = balance + :delta")
        values.update({":delta": refund, ":m": reservation.month})
    else:  # the month it came from is over: only what that month would have carried comes back
        gap = Decimal(terms.closed.get("gap", ZERO))
        back = _returned(gap, refund)
        sets += ["balance = balance + :back", "purchased = purchased + :back", "gap = :gap_after"]
        condition += " AND gap = :gap"
        values.update({":back": back, ":gap": gap, ":gap_after": gap - refund, ":m": terms.closed["month"]})
    if terms.refund_free:
        sets.append("free_used = free_used - :one")
        values[":one"] = 1
    if terms.tokens:
        sets.append("tok_n = tok_n + :tokens")
        condition += " AND win = :win"
        values.update({":tokens": terms.tokens, ":win": reservation.window})
    return {
        "Update": {
            "TableName": settings().usage_table,
            "Key": account.key(reservation.key_id),
            "UpdateExpression": "SET " + ", ".join(sets) + " REMOVE #res.#rid",
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": dynamo.to_item(values),
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
    }


def _token(request_id: str, terms: _Terms) -> str:
    """Idempotency token: the same settlement retried is absorbed; a corrected one is a new call."""
    closed = terms.closed.get("gap") if terms.closed else None
    text = f"{request_id}|{terms.charge}|{terms.refund_free}|{terms.tokens}|{closed}"
    return hashlib.sha256(text.encode()).hexdigest()[:36]


def settle_sync(
    reservation: Reservation,
    sample: Sample,
    model: str | None = None,
    provider: str | None = None,
    record: dict[str, Any] | None = None,
    now: float | None = None,
    window: int | None = None,
) -> Decimal | None:
    """Charge `sample.cost` (nothing for a free request) and count it; None if it was already settled.

    `window`: the tokens the key's minute window keeps, where they differ from the sample's (a cut
    stream's bounds are billed, but the window counts what a tokenizer likely made of them).
    """
    now = now or time.time()
    day = account.day_of(now)
    expires = int(now) + counters.COUNTER_TTL_DAYS * 86400
    used = sample.prompt_tokens + sample.completion_tokens if window is None else window
    terms = _Terms(
        # A free request costs nothing up to what it covers; beyond that it is charged, as debt if need be.
        charge=max(sample.cost - reservation.cover, ZERO) if reservation.free else sample.cost,
        # A free request that produced nothing gives its slot back, as a paid one is not billed.
        refund_free=reservation.free and used == 0,
        tokens=used - reservation.tokens if account.window_of(now) == reservation.window else 0,
    )
    billed = replace(sample, cost=terms.charge)
    for _ in range(8):  # each retry learns what moved: a minute, a month, another refund of a closed month
        items = [_release(reservation, terms)]
        items += counters.key_items(reservation.key_id, day, billed, expires)
        if model:
            items += counters.shared_items(day, model, provider, billed, expires)
        if record:
            items.append(generations.put_item(reservation.key_id, {**record, "cost": terms.charge}, now))
        try:
            dynamo.client().transact_write_items(
                TransactItems=items, ClientRequestToken=_token(reservation.request_id, terms)
            )
            return terms.charge
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise
            reason = (exc.response.get("CancellationReasons") or [{}])[0]
            if reason.get("Code") != "ConditionalCheckFailed":
                raise
            old = dynamo.from_item(reason.get("Item") or {})
            if reservation.request_id not in (old.get("reservations") or {}):
                return None  # settled already (a retry) or released by the sweeper
            if terms.tokens and int(old.get("win", -1)) != reservation.window:
                terms.tokens = 0  # its minute is over: the window it counted in is gone anyway
            if old.get("month") != reservation.month:
                terms.closed = old
                if terms.refund_free:
                    terms.refund_free = False  # the new month's free requests are fresh anyway
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


# Work the store refused for longer than a request may wait, tried again with this process's next request.
_pending: list[Callable[[], Any]] = []  # not a cache: clearing it would lose a bill


def later(job: Callable[[], Any]) -> None:
    """Keep a settlement (or a release) that could not be written, to try again while this process lives."""
    _pending.append(job)


def pending() -> int:
    return len(_pending)


async def catch_up() -> None:
    """Write what earlier requests could not, oldest first; stop at the first failure (the store is still away).

    Every job is idempotent (the reservation's entry guards it), so two requests catching up at once
    cannot charge twice.
    """
    while _pending:
        job = _pending[0]
        try:
            await dynamo.call(job)
        except Exception:
            return
        if _pending and _pending[0] is job:
            _pending.pop(0)


def release_sync(key_id: str, request_id: str) -> bool:
    """Release, charging nothing, a reservation that admission may have written though it answered an error;
    whether one was open."""
    raw = dynamo.client().get_item(TableName=settings().usage_table, Key=account.key(key_id), ConsistentRead=True)
    entry = (dynamo.from_item(raw.get("Item") or {}).get("reservations") or {}).get(request_id)
    if entry is None:
        return False
    nothing = Sample(0, 0, ZERO, error=True, latency_ms=0)
    return settle_sync(Reservation.of(key_id, request_id, entry), nothing) is not None
