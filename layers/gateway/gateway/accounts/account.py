"""The per-key account item: balance, monthly renewal, free requests, rate window, open reservations.

One item (`KEY#<key_id>` / `ACCOUNT` in the usage table) holds everything admission checks,
so admitting a request is one conditional write. Credit is one `balance` (all spendable USD,
open reservations already taken out; below zero it is debt) plus `purchased`, the part of it
that was bought: monthly credit is spent first, so the purchased part still unspent is always
min(purchased, balance), and that is all a new month carries over. `held` is the sum of the
open reservations, and `gap` says how much of the closed month's purchased credit its
still-open reservations hold: their refunds go back to that month, never into the new one.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from gateway.accounts.plans import Plan
from gateway.config import settings
from gateway.storage import dynamo, schema

ZERO = Decimal(0)


def key(key_id: str) -> dict[str, Any]:
    return schema.account_key(key_id)


WINDOW_SECONDS = 60  # the rate windows (rpm, tpm): one a minute


def window_of(ts: float) -> int:
    return int(ts // WINDOW_SECONDS)


def month_of(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m")


def day_of(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def opening(key_id: str, plan: Plan, month: str) -> dict[str, Any]:
    return {
        "pk": schema.key_pk(key_id),
        "sk": schema.ACCOUNT,
        "month": month,
        "balance": plan.monthly_credit,
        "purchased": ZERO,
        "held": ZERO,
        "gap": ZERO,
        "free_used": 0,
        "win": 0,
        "req_n": 0,
        "tok_n": 0,
        "reservations": {},
    }


def conditional_failed(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def open_account(key_id: str, plan: Plan, now: float | None = None) -> None:
    """Create the account item if it does not exist yet (a lost race is fine)."""
    try:
        dynamo.client().put_item(
            TableName=settings().usage_table,
            Item=dynamo.to_item(opening(key_id, plan, month_of(now or time.time()))),
            ConditionExpression="attribute_not_exists(pk)",
        )
    except ClientError as exc:
        if not conditional_failed(exc):
            raise


def purchased_left(state: dict[str, Any]) -> Decimal:
    """The bought credit still unspent (monthly credit goes first); negative is debt carried in."""
    return min(max(Decimal(state.get("purchased", ZERO)), ZERO), Decimal(state.get("balance", ZERO)))


def roll_over(key_id: str, plan: Plan, old: dict[str, Any], month: str) -> None:
    """Start `month`: fresh monthly credit and free requests; unspent purchased credit and debt carried over.

    Open reservations are taken as charged in full; `gap` records how much more purchased
    credit the old month would carry if they were refunded, so a refund that arrives later
    moves only that into the new month (settlement's `_returned`). Done by the first request
    of the month (or any admin call), conditioned on every figure it read, so it never races
    a settlement, and two instances cannot both grant the credit.
    """
    balance = Decimal(old.get("balance", ZERO))
    carried = purchased_left(old)
    gap = max(Decimal(old.get("purchased", ZERO)), ZERO) - balance
    try:
        dynamo.client().update_item(
            TableName=settings().usage_table,
            Key=key(key_id),
            UpdateExpression=(
                "SET #month = :m, balance = :balance, purchased = :carried, gap = :gap, free_used = :zero"
            ),
            ConditionExpression="#month = :old AND balance = :was AND (held = :held OR attribute_not_exists(held))",
            ExpressionAttributeNames={"#month": "month"},
            ExpressionAttributeValues=dynamo.to_item(
                {
                    ":m": month,
                    ":old": old["month"],
                    ":was": balance,
                    ":held": Decimal(old.get("held", ZERO)),
                    ":balance": plan.monthly_credit + carried,
                    ":carried": carried,
                    ":gap": gap,
                    ":zero": 0,
                }
            ),
        )
    except ClientError as exc:
        if not conditional_failed(exc):
            raise


def read(key_id: str, plan: Plan) -> dict[str, Any]:
    """The account as of now: created or rolled over to this month first, so what is shown is current."""
    now = time.time()
    month = month_of(now)
    for _ in range(3):
        item = dynamo.client().get_item(TableName=settings().usage_table, Key=key(key_id), ConsistentRead=True)
        if "Item" not in item:
            open_account(key_id, plan, now)
            continue
        state = dynamo.from_item(item["Item"])
        if state["month"] < month:
            roll_over(key_id, plan, state, month)
            continue
        return state
    raise RuntimeError(f"account of {key_id} did not settle")


def top_up(key_id: str, plan: Plan, amount: Decimal) -> dict[str, Any]:
    """Add purchased credit, which does not expire at the month's end; it pays any debt first."""
    if amount <= 0:
        raise ValueError("a top-up must be positive")
    for _ in range(5):
        state = read(key_id, plan)  # exists and is in this month, so the top-up is not rolled away
        was = Decimal(state.get("purchased", ZERO))
        try:
            response = dynamo.client().update_item(
                TableName=settings().usage_table,
                Key=key(key_id),
                # Debt carried in from a closed month (purchased < 0) was paid by this month's credit.
                UpdateExpression="SET balance = balance + :x, purchased = :bought",
                ConditionExpression="purchased = :was AND #month = :m",
                ExpressionAttributeNames={"#month": "month"},
                ExpressionAttributeValues=dynamo.to_item(
                    {":x": amount, ":bought": max(was, ZERO) + amount, ":was": was, ":m": state["month"]}
                ),
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if not conditional_failed(exc):
                raise
            continue
        return dynamo.from_item(response["Attributes"])
    raise RuntimeError(f"top-up of {key_id} did not settle")


def credit_view(state: dict[str, Any]) -> dict[str, Decimal]:
    """Balance split for display: monthly and purchased credit left, held for open requests, and debt."""
    balance = Decimal(state.get("balance", ZERO))
    purchased = max(purchased_left(state), ZERO)
    return {
        "balance": balance,
        "monthly": max(balance - purchased, ZERO),
        "purchased": purchased,
        "reserved": Decimal(state.get("held", ZERO)),
        "debt": max(-balance, ZERO),
    }
