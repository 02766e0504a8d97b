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
import time
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from gateway import caches
from gateway.accounts import account
from gateway.accounts.plans import Plan
from gateway.config import settings
from gateway.errors import GatewayError, invalid_request, retry_soon
from gateway.storage import dynamo, schema
from gateway.storage.schema import Reservation

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
    seconds = max((window + 1) * account.WINDOW_SECONDS - time.time(), 0.001)
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
    wait = max(math.ceil((window + 1) * account.WINDOW_SECONDS - time.time()), 1)
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


def _attempt(
    key_id: str, rid: str, plan: Plan, amount: Decimal, tokens: int, guess: dict[str, Any], now: float
) -> dict[str, Any]:
    """One conditional write built for what the item most likely holds; raises ClientError if it does not."""
    window, month = account.window_of(now), account.month_of(now)
    free = 0 < amount <= plan.free_request_cost and guess.get("month") == month and free_left(plan, guess)
    cover = plan.free_request_cost if free else Decimal(0)
    entry = Reservation(key_id, rid, Decimal(0) if free else amount, free, month, tokens, window, int(now), cover)
    # The sparse index the sweeper reads: set when the account opens a reservation, kept until a sweep.
    sets = [
        "#res.#rid = :entry",
        "last_used = :now",
        "open_shard = if_not_exists(open_shard, :shard)",
        "open_at = if_not_exists(open_at, :now)",
    ]
    # Idempotent: if the SDK retries a write whose first attempt did land, the retry is refused here
    # instead of charging and counting the request twice.
    conditions = ["attribute_not_exists(#res.#rid)", "#month = :m"]
    values: dict[str, Any] = {
        ":m": month,
        ":w": window,
        ":one": 1,
        ":tok": tokens,
        ":now": int(now),
        ":shard": schema.open_shard(key_id),
        ":entry": entry.entry(),
    }
    if int(guess.get("win", -1)) == window:
        sets += ["req_n = req_n + :one", "tok_n = tok_n + :tok"]
        conditions += ["win = :w", "req_n < :rpm", "tok_n <= :tok_room"]
        values.update({":rpm": plan.rpm, ":tok_room": plan.tpm - tokens})
    else:
        sets += ["win = :w", "req_n = :one", "tok_n = :tok"]
        conditions += ["win < :w"]
    if free or amount <= 0:
        conditions.append("balance >= :zero")  # a key in debt is refused until a top-up covers it
        values[":zero"] = 0
    if free:
        sets.append("free_used = free_used + :one")
        conditions.append("free_used < :free")
        values[":free"] = plan.free_requests
    elif amount > 0:
        sets += ["balance = balance - :amount", "held = if_not_exists(held, :zero) + :amount"]
        conditions.append("balance >= :amount")
        values.update({":amount": amount, ":zero": 0})
    response = dynamo.client().update_item(
        TableName=settings().usage_table,
        Key=account.key(key_id),
        UpdateExpression="SET " + ", ".join(sets),
        ConditionExpression=" AND ".join(conditions),
        ExpressionAttributeNames={"#res": "reservations", "#rid": rid, "#month": "month"},
        ExpressionAttributeValues=dynamo.to_item(values),
        ReturnValues="ALL_NEW",
        ReturnValuesOnConditionCheckFailure="ALL_OLD",
    )
    return dynamo.from_item(response["Attributes"])


def admit_sync(key_id: str, request_id: str, plan: Plan, amount: Decimal, tokens: int) -> Admission:
    now = time.time()
    window, month = account.window_of(now), account.month_of(now)
    if tokens > plan.tpm:  # no minute could ever admit it: not a 429 that clients would retry
        raise invalid_request(
            f"This request may use up to {tokens} tokens, more than this key's limit of {plan.tpm} "
            "tokens a minute; lower max_tokens or shorten the prompt.",
            "max_tokens",
            "tokens_over_limit",
        )
    guess = _last_seen.get(key_id) or {"month": month, "win": window, "free_used": 0}  # free requests first
    for _ in range(MAX_ATTEMPTS):
        try:
            state = _attempt(key_id, request_id, plan, amount, tokens, guess, now)
        except ClientError as exc:
            if not account.conditional_failed(exc):
                raise
            old = exc.response.get("Item")
            if old is None:
                account.open_account(key_id, plan, now)
                guess = {"month": month, "win": 0, "free_used": 0}
                continue
            guess = dynamo.from_item(old)
            if request_id in (guess.get("reservations") or {}):
                state = guess  # an earlier attempt of this very write landed: admitted once, not twice
                break
            if guess["month"] < month:
                account.roll_over(key_id, plan, guess, month)
                guess = {**guess, "month": month, "free_used": 0}
                continue
            if int(guess.get("win", 0)) == window:
                if int(guess.get("req_n", 0)) >= plan.rpm:
                    raise _rate_limited("requests", plan, window, guess, f"limit {plan.rpm}") from None
                if int(guess.get("tok_n", 0)) + tokens > plan.tpm:
                    detail = f"limit {plan.tpm}, used {guess.get('tok_n')}, requested {tokens}"
                    raise _rate_limited("tokens", plan, window, guess, detail) from None
            balance = Decimal(guess.get("balance", 0))
            no_free = not free_left(plan, guess) or amount > plan.free_request_cost
            if balance < 0 or (amount > 0 and no_free and balance < amount):
                raise _insufficient(amount, guess, plan) from None
            continue
        break
    else:
        raise retry_soon("The key's account is too busy right now; please retry.", "account_busy")
    _last_seen[key_id] = state
    return Admission(
        reservation=Reservation.of(key_id, request_id, state["reservations"][request_id]),
        window=window,
        tokens=tokens,
        plan=plan,
        requests_used=int(state["req_n"]),
        tokens_used=int(state["tok_n"]),
    )


async def admit(key_id: str, request_id: str, plan: Plan, amount: Decimal, tokens: int) -> Admission:
    return await dynamo.call(admit_sync, key_id=key_id, request_id=request_id, plan=plan, amount=amount, tokens=tokens)


def extend_sync(reservation: Reservation, more: Decimal) -> Reservation | None:
    """Hold `more` credit on an open reservation (a fallback after an attempt that may have been billed);
    None when the key's credit cannot cover it. Conditioned on the amount it had, so a retried write
    that had landed is recognised, not held twice."""
    extended = replace(reservation, amount=reservation.amount + more)
    try:
        dynamo.client().update_item(
            TableName=settings().usage_table,
            Key=account.key(reservation.key_id),
            UpdateExpression=(
                "SET balance = balance - :more, held = if_not_exists(held, :zero) + :more, #res.#rid.amount = :after"
            ),
            ConditionExpression="#res.#rid.amount = :was AND balance >= :more",
            ExpressionAttributeNames={"#res": "reservations", "#rid": reservation.request_id},
            ExpressionAttributeValues=dynamo.to_item(
                {":more": more, ":zero": Decimal(0), ":was": reservation.amount, ":after": extended.amount}
            ),
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
    except ClientError as exc:
        if not account.conditional_failed(exc):
            raise
        entry = (dynamo.from_item(exc.response.get("Item") or {}).get("reservations") or {}).get(reservation.request_id)
        return extended if entry is not None and Decimal(entry["amount"]) == extended.amount else None
    return extended


async def extend(reservation: Reservation, more: Decimal) -> Reservation | None:
    return await dynamo.call(extend_sync, reservation=reservation, more=more)


def count_sync(key_id: str, plan: Plan) -> None:
    """Count a request that reserves nothing (a token count) against the key's requests a minute; a 429 past it."""
    now = time.time()
    window = account.window_of(now)
    for _ in range(MAX_ATTEMPTS):
        try:
            dynamo.client().update_item(
                TableName=settings().usage_table,
                Key=account.key(key_id),
                UpdateExpression="SET req_n = req_n + :one",
                ConditionExpression="win = :w AND req_n < :rpm",
                ExpressionAttributeValues=dynamo.to_item({":one": 1, ":w": window, ":rpm": plan.rpm}),
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
            return
        except ClientError as exc:
            if not account.conditional_failed(exc):
                raise
            old = exc.response.get("Item")
        if old is None:
            account.open_account(key_id, plan, now)
            continue
        state = dynamo.from_item(old)
        if int(state.get("win", -1)) == window:
            raise _rate_limited("requests", plan, window, state, f"limit {plan.rpm}")
        try:  # the first request of a new minute opens its window
            dynamo.client().update_item(
                TableName=settings().usage_table,
                Key=account.key(key_id),
                UpdateExpression="SET win = :w, req_n = :one, tok_n = :zero",
                ConditionExpression="win < :w",
                ExpressionAttributeValues=dynamo.to_item({":one": 1, ":w": window, ":zero": 0}),
            )
            return
        except ClientError as exc:
            if not account.conditional_failed(exc):
                raise
    raise retry_soon("The key's account is too busy right now; please retry.", "account_busy")


async def count(key_id: str, plan: Plan) -> None:
    await dynamo.call(count_sync, key_id=key_id, plan=plan)
