"""The per-key account item: balance, monthly renewal, free requests, rate window, open reservations.

One item (`KEY#<key_id>` / `ACCOUNT` in the usage table) holds everything admission checks,
so admitting a request is one conditional write. Credit is one `balance` (all spendable USD)
plus `purchased`, the part of it that was bought: monthly credit is spent first, so the
purchased part still unspent is always min(purchased, balance), and that is all a new month
carries over.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from gateway.accounts.plans import Plan
from gateway.config import settings
from gateway.storage import dynamo

ZERO = Decimal(0)


def key(key_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"KEY#{key_id}"}, "sk": {"S": "ACCOUNT"}}


def month_of(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m")


def day_of(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def opening(key_id: str, plan: Plan, month: str) -> dict[str, Any]:
    return {
        "pk": f"KEY#{key_id}",
        "sk": "ACCOUNT",
        "month": month,
        "balance": plan.monthly_credit,
        "purchased": ZERO,
        "free_used": 0,
        "win": 0,
        "req_n": 0,
        "tok_n": 0,
        "uncollected": ZERO,
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


def roll_over(key_id: str, plan: Plan, old: dict[str, Any], month: str) -> None:
    """Start `month`: fresh monthly credit and free requests, unspent purchased credit carried over.

    Done by the first request of the month (or any admin call), conditioned on the old month,
    so no scheduled job races the requests and two instances cannot both grant the credit.
    """
    carried = min(Decimal(old.get("purchased", ZERO)), max(Decimal(old.get("balance", ZERO)), ZERO))
    try:
        dynamo.client().update_item(
            TableName=settings().usage_table,
            Key=key(key_id),
            UpdateExpression="SET #month = :m, balance = :balance, purchased = :carried, free_used = :zero",
            ConditionExpression="#month = :old",
            ExpressionAttributeNames={"#month": "month"},
            ExpressionAttributeValues=dynamo.to_item(
                {
                    ":m": month,
                    ":old": old["month"],
                    ":balance": plan.monthly_credit + carried,
                    ":carried": carried,
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
    """Add purchased credit, which does not expire at the month's end."""
    if amount <= 0:
        raise ValueError("a top-up must be positive")
    read(key_id, plan)  # exists and is in this month, so the top-up is not rolled away
    response = dynamo.client().update_item(
        TableName=settings().usage_table,
        Key=key(key_id),
        UpdateExpression="ADD balance :x, purchased :x",
        ExpressionAttributeValues=dynamo.to_item({":x": amount}),
        ReturnValues="ALL_NEW",
    )
    return dynamo.from_item(response["Attributes"])


def credit_view(state: dict[str, Any]) -> dict[str, Decimal]:
    """Balance split for display: monthly credit left, purchased credit left, and held for open requests."""
    balance = Decimal(state.get("balance", ZERO))
    purchased = min(Decimal(state.get("purchased", ZERO)), max(balance, ZERO))
    reserved = sum((Decimal(r["amount"]) for r in (state.get("reservations") or {}).values()), ZERO)
    return {"balance": balance, "monthly": balance - purchased, "purchased": purchased, "reserved": reserved}
