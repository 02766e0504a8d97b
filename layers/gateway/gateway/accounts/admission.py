"""Admission: one conditional write decides whether a request may go upstream.

The write checks and updates, atomically, the key's one-minute request and token window,
its month, its free-request quota or its credit (a key in debt gets nothing, not even a
free request), and records the credit reservation under the gateway's own id for the
request. Its conditions compare against limits, not against values read earlier,
so concurrent requests never need to retry each other; only a stale guess about which
minute or month the item is in costs a second attempt, and the failed write's ALL_OLD
tells the truth for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from gateway import caches
from gateway.accounts import account
from gateway.accounts.plans import Plan
from gateway.errors import GatewayError, invalid_request, retry_soon
from gateway.storage import dynamo, writes
from gateway.storage.dynamo import Op
from gateway.storage.dynamo import Plan as Steps
from gateway.storage.schema import Reservation
from gateway.storage.writes import Done

MAX_ATTEMPTS = 6
_last_seen: dict[str, dict[str, Any]] = {}  # key_id -> last account state seen, only to guess well
caches.register(_last_seen.clear, f"{__name__}._last_seen")


@dataclass(frozen=True, slots=True)
class Admission:
    reservation: Reservation
    window: int
    tokens: int  # counted against TPM
    plan: Plan
    requests_used: int
    tokens_used: int

    def headers(self) -> dict[str, str]:
        return rate_headers(self.plan, self.window, self.requests_used, self.tokens_used)


def _reset(window: int) -> str:
    seconds = max((window + 1) * account.WINDOW_SECONDS - writes.now(), 0.001)
    return f"{seconds:.3f}s"


def rate_headers(plan: Plan, window: int, requests_used: int, tokens_used: int) -> dict[str, str]:
    reset = _reset(window)
    return {
        "x-ratelimit-limit-requests": str(plan.rpm),
        "x-ratelimit-remaining-requests": str(max(plan.rpm - requests_used, 0)),
        "x-ratelimit-reset-requests": reset,
        "x-ratelimit-limit-tokens": str(plan.tpm),
        "x-ratelimit-remaining-tokens": str(max(plan.tpm - tokens_used, 0)),
        "x-ratelimit-reset-tokens": reset,
    }


def _rate_limited(limit: str, plan: Plan, window: int, state: dict[str, Any], detail: str) -> GatewayError:
    wait = max(math.ceil((window + 1) * account.WINDOW_SECONDS - writes.now()), 1)
    headers = {
        "Retry-After": str(wait),
        "retry-after-ms": str(wait * 1000),
        **rate_headers(plan, window, int(state.get("req_n", 0)), int(state.get("tok_n", 0))),
    }
    return GatewayError(
        429,
        f"Rate limit reached on {limit} per minute: {detail}. Please try again in {wait}s.",
        type=limit,
        code="rate_limit_exceeded",
        headers=headers,
    )


class InsufficientCredit(GatewayError):
    """A 402 that says how much credit there was, so the caller may ask for less."""

    def __init__(self, message: str, available: Decimal) -> None:
        super().__init__(402, message, type="insufficient_quota", code="insufficient_quota")
        self.available = available


def free_left(plan: Plan, state: dict[str, Any]) -> bool:
    return int(state.get("free_used", 0)) < plan.free_requests


def _insufficient(amount: Decimal, state: dict[str, Any], plan: Plan) -> InsufficientCredit:
    """A 402; `available` is what a smaller request could still have: the credit, or a free request's worth."""
    balance = Decimal(state.get("balance", 0))
    if balance < 0:
        return InsufficientCredit(
            f"This key owes ${-balance:.6f} for usage beyond what its requests reserved. "
            "Top up its credit to continue.",
            balance,
        )
    if free_left(plan, state):
        return InsufficientCredit(
            f"Insufficient credit: this request may cost up to ${amount:.6f}, more than the "
            f"${plan.free_request_cost:.6f} a free request covers, and the key has ${balance:.6f} left. "
            "Top up the key's credit or lower max_tokens.",
            max(balance, plan.free_request_cost),
        )
    return InsufficientCredit(
        f"Insufficient credit: this request may cost up to ${amount:.6f} and the key has "
        f"${balance:.6f} left, with {plan.free_requests} free requests a month "
        "already used. Top up the key's credit or lower max_tokens.",
        balance,
    )


def admit_plan(key_id: str, request_id: str, plan: Plan, amount: Decimal, tokens: int) -> Steps[Admission]:
    now = writes.now()
    window, month = account.window_of(now), account.month_of(now)
    if tokens > plan.tpm:  # no minute could ever admit it: not a 429 that clients would retry
        raise invalid_request(
            f"This request may use up to {tokens} tokens, more than this key's limit of {plan.tpm} "
            "tokens a minute; lower max_tokens or shorten the prompt.",
            "max_tokens",
            "tokens_over_limit",
        )
    guess = _last_seen.get(key_id) or {"month": month, "win": window, "free_used": 0}  # free requests first

    def write() -> Op:
        free = 0 < amount <= plan.free_request_cost and guess.get("month") == month and free_left(plan, guess)
        cover = plan.free_request_cost if free else Decimal(0)
        held = Decimal(0) if free else amount
        entry = Reservation(key_id, request_id, held, free, month, tokens, window, int(now), cover)
        return account.admit_op(entry, plan, int(guess.get("win", -1)) == window)

    def learn(old: dict[str, Any] | None) -> Steps[Done[dict[str, Any]] | None]:
        nonlocal guess
        if (yield from account.current(key_id, plan, old, month, now)):
            guess = {"month": month, "win": 0 if old is None else old.get("win", 0), "free_used": 0}
            return None
        assert old is not None
        guess = old
        if request_id in account.reservations(old):
            return Done(old)  # an earlier attempt of this very write landed: admitted once, not twice
        if int(old.get("win", 0)) == window:
            if int(old.get("req_n", 0)) >= plan.rpm:
                raise _rate_limited("requests", plan, window, old, f"limit {plan.rpm}")
            if int(old.get("tok_n", 0)) + tokens > plan.tpm:
                detail = f"limit {plan.tpm}, used {old.get('tok_n')}, requested {tokens}"
                raise _rate_limited("tokens", plan, window, old, detail)
        balance = Decimal(old.get("balance", 0))
        no_free = not free_left(plan, old) or amount > plan.free_request_cost
        if balance < 0 or (amount > 0 and no_free and balance < amount):
            raise _insufficient(amount, old, plan)
        return None

    state = yield from writes.conditional(
        write, lambda answer: dynamo.from_item(answer["Attributes"]), learn, MAX_ATTEMPTS, _busy
    )
    _last_seen[key_id] = state
    return Admission(
        reservation=Reservation.of(key_id, request_id, state["reservations"][request_id]),
        window=window,
        tokens=tokens,
        plan=plan,
        requests_used=int(state["req_n"]),
        tokens_used=int(state["tok_n"]),
    )


def _busy() -> GatewayError:
    return retry_soon("The key's account is too busy right now; please retry.", "account_busy")


def admit_sync(key_id: str, request_id: str, plan: Plan, amount: Decimal, tokens: int) -> Admission:
    return dynamo.run_sync(admit_plan(key_id, request_id, plan, amount, tokens))


async def admit(key_id: str, request_id: str, plan: Plan, amount: Decimal, tokens: int) -> Admission:
    return await dynamo.run(admit_plan(key_id, request_id, plan, amount, tokens))


def extend_plan(reservation: Reservation, more: Decimal) -> Steps[Reservation | None]:
    """Hold `more` credit on an open reservation (a fallback after an attempt that may have been billed);
    None when the key's credit cannot cover it. A retried write that had landed is recognised, not held twice."""
    extended = replace(reservation, amount=reservation.amount + more)

    def learn(old: dict[str, Any] | None) -> Done[Reservation | None]:
        entry = account.reservations(old).get(reservation.request_id)
        return Done(extended if entry is not None and Decimal(entry["amount"]) == extended.amount else None)

    return (
        yield from writes.conditional(lambda: account.extend_op(reservation, more), lambda _: extended, learn, 1, _busy)
    )


def extend_sync(reservation: Reservation, more: Decimal) -> Reservation | None:
    return dynamo.run_sync(extend_plan(reservation, more))


async def extend(reservation: Reservation, more: Decimal) -> Reservation | None:
    return await dynamo.run(extend_plan(reservation, more))


def count_plan(key_id: str, plan: Plan) -> Steps[None]:
    """Count a request that reserves nothing (a token count) against the key's requests a minute; a 429 past it."""
    now = writes.now()
    window = account.window_of(now)
    new_window = False

    def learn(old: dict[str, Any] | None) -> Steps[None]:
        nonlocal new_window
        if old is None:
            yield from account.open_plan(key_id, plan, now)
        elif int(old.get("win", -1)) != window:
            new_window = True  # the first request of a new minute opens its window
        elif int(old.get("req_n", 0)) >= plan.rpm:
            raise _rate_limited("requests", plan, window, old, f"limit {plan.rpm}")
        else:
            new_window = False  # another request opened the minute first
        return None

    yield from writes.conditional(
        lambda: account.count_op(key_id, plan, window, new_window), lambda _: None, learn, MAX_ATTEMPTS, _busy
    )


def count_sync(key_id: str, plan: Plan) -> None:
    dynamo.run_sync(count_plan(key_id, plan))


async def count(key_id: str, plan: Plan) -> None:
    await dynamo.run(count_plan(key_id, plan))
