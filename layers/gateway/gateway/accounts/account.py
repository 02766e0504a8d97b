"""The per-key account item: balance, monthly renewal, free requests, rate window, open reservations.

One item (`KEY#<key_id>` / `ACCOUNT` in the usage table) holds everything admission checks,
so admitting a request is one conditional write. Credit is one `balance` (all spendable USD,
open reservations already taken out; below zero it is debt) plus `purchased`, the part of it
that was bought: monthly credit is spent first, so the purchased part still unspent is always
min(purchased, balance), and that is all a new month carries over. `held` is the sum of the
open reservations, and `gap` says how much of the closed month's purchased credit its
still-open reservations hold: their refunds go back to that month, never into the new one.

This module owns the item: its attribute names and every expression that reads or writes it.
Admission, settlement and the sweeper decide what to ask; the calls are built here, as `Op`s
or plans (storage/dynamo.py) that the request path runs on its lean client and the admin tool
on boto3.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from gateway.accounts.plans import Plan
from gateway.config import settings
from gateway.storage import dynamo, schema, writes
from gateway.storage.dynamo import Op
from gateway.storage.dynamo import Plan as Steps
from gateway.storage.schema import Reservation
from gateway.storage.writes import Done

ZERO = Decimal(0)
WINDOW_SECONDS = 60  # the rate windows (rpm, tpm): one a minute
RESERVATIONS = {"#res": "reservations", "#month": "month"}


def key(key_id: str) -> dict[str, Any]:
    return schema.account_key(key_id)


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


def _update(
    key_id: str, sets: list[str], condition: str | None, names: dict[str, str], values: dict[str, Any], **more: Any
) -> Op:
    return writes.update(key(key_id), " ".join(sets), condition, names, values, **more)


def open_plan(key_id: str, plan: Plan, now: float) -> Steps[None]:
    """Create the account item if it does not exist yet (a lost race is fine)."""
    item = {
        "TableName": settings().usage_table,
        "Item": dynamo.to_item(opening(key_id, plan, month_of(now))),
        "ConditionExpression": "attribute_not_exists(pk)",
    }
    yield from writes.unless_refused(Op("PutItem", item))


def purchased_left(state: dict[str, Any]) -> Decimal:
    """The bought credit still unspent (monthly credit goes first); negative is debt carried in."""
    return min(max(Decimal(state.get("purchased", ZERO)), ZERO), Decimal(state.get("balance", ZERO)))


def roll_over_plan(key_id: str, plan: Plan, old: dict[str, Any], month: str) -> Steps[None]:
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
    values = {
        ":m": month,
        ":old": old["month"],
        ":was": balance,
        ":held": Decimal(old.get("held", ZERO)),
        ":balance": plan.monthly_credit + carried,
        ":carried": carried,
        ":gap": gap,
        ":zero": 0,
    }
    roll = _update(
        key_id,
        ["SET #month = :m, balance = :balance, purchased = :carried, gap = :gap, free_used = :zero"],
        "#month = :old AND balance = :was AND (held = :held OR attribute_not_exists(held))",
        {"#month": "month"},
        values,
    )
    yield from writes.unless_refused(roll)


def current(key_id: str, plan: Plan, old: dict[str, Any] | None, month: str, now: float) -> Steps[bool]:
    """Bring the account to `month` if the item shown needs it (absent: opened; an older month: rolled
    over); whether anything was written."""
    if old is None:
        yield from open_plan(key_id, plan, now)
        return True
    if old.get("month", month) < month:
        yield from roll_over_plan(key_id, plan, old, month)
        return True
    return False


def get_op(key_id: str) -> Op:
    return Op("GetItem", {"TableName": settings().usage_table, "Key": key(key_id), "ConsistentRead": True})


def read_plan(key_id: str, plan: Plan) -> Steps[dict[str, Any]]:
    """The account as of now: created or rolled over to this month first, so what is shown is current."""
    now = writes.now()
    month = month_of(now)
    for _ in range(3):
        answer = yield get_op(key_id)
        state = dynamo.from_item(answer["Item"]) if "Item" in answer else None
        if not (yield from current(key_id, plan, state, month, now)):
            return state  # type: ignore[return-value]
    raise RuntimeError(f"account of {key_id} did not settle")


def top_up_plan(key_id: str, plan: Plan, amount: Decimal) -> Steps[dict[str, Any]]:
    """Add purchased credit, which does not expire at the month's end; it pays any debt first.

    The write carries the top-up's own id (`last_topup`): a retry of a write that had landed (its answer
    lost) is refused, and the refusal shows the id, so the credit is added once, not twice."""
    if amount <= 0:
        raise ValueError("a top-up must be positive")
    topup = secrets.token_hex(8)
    state = yield from read_plan(key_id, plan)  # exists and is in this month, so the top-up is not rolled away

    def write() -> Op:
        was = Decimal(state.get("purchased", ZERO))
        # Debt carried in from a closed month (purchased < 0) was paid by this month's credit.
        values = {":x": amount, ":bought": max(was, ZERO) + amount, ":was": was, ":m": state["month"], ":id": topup}
        return _update(
            key_id,
            ["SET balance = balance + :x, purchased = :bought, last_topup = :id"],
            "purchased = :was AND #month = :m AND (attribute_not_exists(last_topup) OR last_topup <> :id)",
            {"#month": "month"},
            values,
            ReturnValues="ALL_NEW",
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )

    def learn(old: dict[str, Any] | None) -> Steps[Done[dict[str, Any]] | None]:
        nonlocal state
        if old is not None and old.get("last_topup") == topup:
            return Done(old)  # this very top-up had landed
        state = yield from read_plan(key_id, plan)
        return None

    return (
        yield from writes.conditional(
            write,
            lambda answer: dynamo.from_item(answer["Attributes"]),
            learn,
            5,
            lambda: RuntimeError(f"top-up of {key_id} did not settle"),
        )
    )


def open_account(key_id: str, plan: Plan, now: float | None = None) -> None:
    dynamo.run_sync(open_plan(key_id, plan, writes.now() if now is None else now))


def read(key_id: str, plan: Plan) -> dict[str, Any]:
    return dynamo.run_sync(read_plan(key_id, plan))


def top_up(key_id: str, plan: Plan, amount: Decimal) -> dict[str, Any]:
    return dynamo.run_sync(top_up_plan(key_id, plan, amount))


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


# --- the request path's writes: admission, extension, counting, release ----------------------


def admit_op(entry: Reservation, plan: Plan, same_window: bool) -> Op:
    """Open a reservation: count it in the minute window, take its credit or a free request, index it for
    the sweeper. Idempotent: a retried write whose first attempt landed is refused, not counted twice."""
    sets = [
        "#res.#rid = :entry",
        "last_used = :now",
        "open_shard = if_not_exists(open_shard, :shard)",
        "open_at = if_not_exists(open_at, :now)",
    ]
    conditions = ["attribute_not_exists(#res.#rid)", "#month = :m"]
    values: dict[str, Any] = {
        ":m": entry.month,
        ":w": entry.window,
        ":one": 1,
        ":tok": entry.tokens,
        ":now": entry.at,
        ":shard": schema.open_shard(entry.key_id),
        ":entry": entry.entry(),
    }
    if same_window:
        sets += ["req_n = req_n + :one", "tok_n = tok_n + :tok"]
        conditions += ["win = :w", "req_n < :rpm", "tok_n <= :tok_room"]
        values.update({":rpm": plan.rpm, ":tok_room": plan.tpm - entry.tokens})
    else:
        sets += ["win = :w", "req_n = :one", "tok_n = :tok"]
        conditions += ["win < :w"]
    if entry.free or entry.amount <= 0:
        conditions.append("balance >= :zero")  # a key in debt is refused until a top-up covers it
        values[":zero"] = 0
    if entry.free:
        sets.append("free_used = free_used + :one")
        conditions.append("free_used < :free")
        values[":free"] = plan.free_requests
    elif entry.amount > 0:
        sets += ["balance = balance - :amount", "held = if_not_exists(held, :zero) + :amount"]
        conditions.append("balance >= :amount")
        values.update({":amount": entry.amount, ":zero": 0})
    return _update(
        entry.key_id,
        ["SET " + ", ".join(sets)],
        " AND ".join(conditions),
        {**RESERVATIONS, "#rid": entry.request_id},
        values,
        ReturnValues="ALL_NEW",
        ReturnValuesOnConditionCheckFailure="ALL_OLD",
    )


def extend_op(reservation: Reservation, more: Decimal) -> Op:
    """Hold `more` on an open reservation, conditioned on the amount it had (so a landed retry is recognised)."""
    values = {":more": more, ":zero": ZERO, ":was": reservation.amount, ":after": reservation.amount + more}
    return _update(
        reservation.key_id,
        ["SET balance = balance - :more, held = if_not_exists(held, :zero) + :more, #res.#rid.amount = :after"],
        "#res.#rid.amount = :was AND balance >= :more",
        {"#res": "reservations", "#rid": reservation.request_id},
        values,
        ReturnValuesOnConditionCheckFailure="ALL_OLD",
    )


def count_op(key_id: str, plan: Plan, window: int, new_window: bool) -> Op:
    """Count a request that reserves nothing in the minute window: within the limit, or opening the minute."""
    if new_window:
        return _update(
            key_id,
            ["SET win = :w, req_n = :one, tok_n = :zero"],
            "win < :w",
            {},
            {":one": 1, ":w": window, ":zero": 0},
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
    return _update(
        key_id,
        ["SET req_n = req_n + :one"],
        "win = :w AND req_n < :rpm",
        {},
        {":one": 1, ":w": window, ":rpm": plan.rpm},
        ReturnValuesOnConditionCheckFailure="ALL_OLD",
    )


def release_item(
    reservation: Reservation,
    charge: Decimal,
    refund_free: bool,
    tokens: int,
    closed: dict[str, Any] | None,
    returned: Decimal,
) -> dict[str, Any]:
    """A transaction item: remove the reservation, release what it held less `charge`, correct the window.

    `closed`: the account as it is when the reservation's month has been rolled over; then only
    `returned` (what that month would have carried) comes back, and its `gap` shrinks by the refund.
    """
    refund = reservation.amount - charge
    sets = ["held = if_not_exists(held, :zero) - :held"]
    values: dict[str, Any] = {":held": reservation.amount, ":zero": ZERO}
    condition = "attribute_exists(#res.#rid) AND #month = :m"
    if closed is None:
        sets.append("balance = balance + :delta")
        values.update({":delta": refund, ":m": reservation.month})
    else:
        gap = Decimal(closed.get("gap", ZERO))
        sets += ["balance = balance + :back", "purchased = purchased + :back", "gap = :gap_after"]
        condition += " AND gap = :gap"
        values.update({":back": returned, ":gap": gap, ":gap_after": gap - refund, ":m": closed["month"]})
    if refund_free:
        sets.append("free_used = free_used - :one")
        values[":one"] = 1
    if tokens:
        sets.append("tok_n = tok_n + :tokens")
        condition += " AND win = :win"
        values.update({":tokens": tokens, ":win": reservation.window})
    update = _update(
        reservation.key_id,
        ["SET " + ", ".join(sets), "REMOVE #res.#rid"],
        condition,
        {**RESERVATIONS, "#rid": reservation.request_id},
        values,
        ReturnValuesOnConditionCheckFailure="ALL_OLD",
    )
    return {"Update": update.payload}


def reservations(state: dict[str, Any] | None) -> dict[str, Any]:
    return (state or {}).get("reservations") or {}


def indexed_before(cutoff: int) -> list[str]:
    """Partition keys of the accounts whose oldest open reservation, as the sparse index holds it, is older
    than `cutoff` (epoch seconds): a query a shard, however many items the table holds (the sweeper's)."""
    found: list[str] = []
    for shard in range(schema.OPEN_SHARDS):
        kwargs: dict[str, Any] = {
            "TableName": settings().usage_table,
            "IndexName": schema.OPEN_INDEX,
            "KeyConditionExpression": "open_shard = :shard AND open_at < :cutoff",
            "ExpressionAttributeValues": {":shard": {"S": str(shard)}, ":cutoff": {"N": str(cutoff)}},
        }
        while True:
            page = dynamo.client().query(**kwargs)
            found += [item["pk"]["S"] for item in page["Items"]]
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return found


def reindex_op(key_id: str, oldest_open: int | None) -> Op:
    """After a sweep: index the account by its oldest open reservation, or drop it from the index if none is."""
    if oldest_open is not None:  # admission only sets open_at when absent: it can only be older than this
        return _update(key_id, ["SET open_at = :at"], None, {}, {":at": oldest_open})
    return _update(
        key_id, ["REMOVE open_shard, open_at"], "size(reservations) = :zero", {}, {":zero": 0}
    )  # unless one was opened meanwhile


def reindex(key_id: str, oldest_open: int | None) -> None:
    dynamo.run_sync(writes.unless_refused(reindex_op(key_id, oldest_open)))
