"""Settlement: exactly once, one transaction: release the reservation, charge the cost, record the request.

The reservation's entry in the account item is the exactly-once guard: the transaction
removes it on condition that it exists, so a retried settlement, or the sweeper racing a
slow request, cannot charge or record twice. The same transaction puts the request's record
(its generation record, or a bare tally), whose tally the usage counters (the key's day and
month, the gateway's, the model's and the provider's) are built from, from the table's stream
(stats/tallies.py): statistics move exactly with what was billed, and a settlement writes two
items, not seven.

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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from gateway.accounts import account
from gateway.stats import generations, tallies
from gateway.stats.counters import Sample
from gateway.storage import dynamo, writes
from gateway.storage.dynamo import Op
from gateway.storage.dynamo import Plan as Steps
from gateway.storage.schema import Reservation
from gateway.storage.writes import Done

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


def _token(request_id: str, terms: _Terms) -> str:
    """Idempotency token: the same settlement retried is absorbed; a corrected one is a new call."""
    closed = terms.closed.get("gap") if terms.closed else None
    text = f"{request_id}|{terms.charge}|{terms.refund_free}|{terms.tokens}|{closed}"
    return hashlib.sha256(text.encode()).hexdigest()[:36]


def settle_plan(
    reservation: Reservation,
    sample: Sample,
    model: str | None = None,
    provider: str | None = None,
    record: dict[str, Any] | None = None,
    now: float | None = None,
    window: int | None = None,
) -> Steps[Decimal | None]:
    """Charge `sample.cost` (nothing for a free request) and record it; None if it was already settled.

    Two items in one transaction: the account (the reservation's removal is the exactly-once guard)
    and the request's record, which carries the tally the usage counters are built from
    (stats/tally.py, from the table's stream). `window`: the tokens the key's minute window keeps,
    where they differ from the sample's (a cut stream's bounds are billed, but the window counts what
    a tokenizer likely made of them).
    """
    now = writes.now() if now is None else now
    used = sample.prompt_tokens + sample.completion_tokens if window is None else window
    terms = _Terms(
        # A free request costs nothing up to what it covers; beyond that it is charged, as debt if need be.
        charge=max(sample.cost - reservation.cover, ZERO) if reservation.free else sample.cost,
        # A free request that produced nothing gives its slot back, as a paid one is not billed.
        refund_free=reservation.free and used == 0,
        tokens=used - reservation.tokens if account.window_of(now) == reservation.window else 0,
    )

    def write() -> Op:
        refund = reservation.amount - terms.charge
        returned = _returned(Decimal(terms.closed.get("gap", ZERO)), refund) if terms.closed else ZERO
        release = account.release_item(
            reservation, terms.charge, terms.refund_free, terms.tokens, terms.closed, returned
        )
        tally = tallies.of(replace(sample, cost=terms.charge), account.day_of(now), model, provider)
        kept = generations.put_item(reservation.key_id, reservation.request_id, record, tally, terms.charge, now)
        return Op(
            "TransactWriteItems",
            {"TransactItems": [release, kept], "ClientRequestToken": _token(reservation.request_id, terms)},
        )

    def learn(old: dict[str, Any] | None) -> Done[Decimal | None] | None:
        # each retry learns what moved: a minute, a month, another refund of a closed month
        if reservation.request_id not in account.reservations(old):
            return Done(None)  # settled already (a retry) or charged by the sweeper
        assert old is not None
        if terms.tokens and int(old.get("win", -1)) != reservation.window:
            terms.tokens = 0  # its minute is over: the window it counted in is gone anyway
        if old.get("month") != reservation.month:
            terms.closed = old
            terms.refund_free = False  # the new month's free requests are fresh anyway
        return None

    return (
        yield from writes.conditional(
            write,
            lambda _: terms.charge,
            learn,
            8,
            lambda: RuntimeError(f"settlement of {reservation.request_id} did not converge"),
        )
    )


def settle_sync(
    reservation: Reservation,
    sample: Sample,
    model: str | None = None,
    provider: str | None = None,
    record: dict[str, Any] | None = None,
    now: float | None = None,
    window: int | None = None,
) -> Decimal | None:
    return dynamo.run_sync(settle_plan(reservation, sample, model, provider, record, now, window))


async def settle(
    reservation: Reservation,
    sample: Sample,
    model: str | None = None,
    provider: str | None = None,
    record: dict[str, Any] | None = None,
    window: int | None = None,
    now: float | None = None,
) -> Decimal | None:
    """`now`: the settlement's time, fixed by a caller that may send it again (its token covers every field)."""
    return await dynamo.run(settle_plan(reservation, sample, model, provider, record, now, window))


# Work the store refused for longer than a request may wait, tried again with this process's next request.
_pending: list[Callable[[], Awaitable[Any]]] = []  # not a cache: clearing it would lose a bill


def later(job: Callable[[], Awaitable[Any]]) -> None:
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
            await job()
        except Exception:
            return
        if _pending and _pending[0] is job:
            _pending.pop(0)


def release_plan(key_id: str, request_id: str) -> Steps[bool]:
    """Release, charging nothing, a reservation that admission may have written though it answered an error;
    whether one was open."""
    answer = yield account.get_op(key_id)
    entry = account.reservations(dynamo.from_item(answer.get("Item") or {})).get(request_id)
    if entry is None:
        return False
    nothing = Sample(0, 0, ZERO, error=True, latency_ms=0)
    return (yield from settle_plan(Reservation.of(key_id, request_id, entry), nothing)) is not None


async def release(key_id: str, request_id: str) -> bool:
    return await dynamo.run(release_plan(key_id, request_id))
