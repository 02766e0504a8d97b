"""Accounts at the DynamoDB level (on the session's moto server): month rollover, credit order, exactly-once
settlement, idempotent admission, the sweeper, and the local emulator's transaction rollback."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.support.moto import own_tables
from tests.support.stack import applied

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def tables(dynamodb_server: tuple[Any, dict[str, str]]) -> Iterator[Any]:
    """Tables of this test's own on the session's moto server, deleted after."""
    with own_tables(dynamodb_server[1], {"KeysTable": "unit-keys", "UsageTable": "unit-usage"}) as client:
        yield client


def developer(**changes: Any) -> Any:
    from dataclasses import replace

    from gateway.accounts import plans

    return replace(plans.get("developer"), **changes)


def account_item(client: Any, key_id: str) -> dict[str, Any]:
    from gateway.accounts import account
    from gateway.storage import dynamo

    return dynamo.from_item(client.get_item(TableName="unit-usage", Key=account.key(key_id))["Item"])


def tallied() -> float:
    """Count the stream's new tallies into the usage counters, as TallyFunction does; the time now."""
    from gateway.local import streams

    streams.drain()
    return time.time()


def sample(cost: str = "0.001", prompt: int = 10, completion: int = 5, error: bool = False) -> Any:
    from gateway.stats.counters import Sample

    return Sample(prompt, completion, Decimal(cost), error, 100)


def test_a_new_month_renews_monthly_credit_and_carries_purchased_credit(tables: Any) -> None:
    from gateway.accounts import account, admission

    plan = developer(free_requests=0)
    account.open_account("k1", plan)
    # Last month: $5 monthly credit, $3 bought, $6 spent, so $2 is left, all of it purchased credit.
    tables.update_item(
        TableName="unit-usage",
        Key=account.key("k1"),
        UpdateExpression="SET #m = :old, balance = :b, purchased = :p, free_used = :f",
        ExpressionAttributeNames={"#m": "month"},
        ExpressionAttributeValues={":old": {"S": "2000-01"}, ":b": {"N": "2"}, ":p": {"N": "3"}, ":f": {"N": "7"}},
    )
    admitted = admission.admit_sync("k1", "r1", plan, Decimal("0.5"), 100)
    state = account_item(tables, "k1")
    assert state["month"] == account.month_of(time.time())
    assert state["purchased"] == 2  # only what was left of it
    assert state["balance"] == Decimal(5) + 2 - Decimal("0.5")  # fresh monthly credit, carried, minus the hold
    assert state["free_used"] == 0
    assert admitted.reservation.amount == Decimal("0.5")


def test_monthly_credit_is_spent_before_purchased_credit(tables: Any) -> None:
    from gateway.accounts import account

    plan = developer()
    account.open_account("k2", plan)
    account.top_up("k2", plan, Decimal("10"))
    view = account.credit_view(account_item(tables, "k2"))
    assert (view["monthly"], view["purchased"]) == (Decimal(5), Decimal(10))
    tables.update_item(  # spend $7
        TableName="unit-usage",
        Key=account.key("k2"),
        UpdateExpression="SET balance = balance - :x",
        ExpressionAttributeValues={":x": {"N": "7"}},
    )
    view = account.credit_view(account_item(tables, "k2"))
    assert (view["monthly"], view["purchased"]) == (Decimal(0), Decimal(8))


def test_free_requests_come_first_and_paid_requests_after(tables: Any) -> None:
    from gateway.accounts import account, admission

    plan = developer(free_requests=2)
    account.open_account("k3", plan)
    kinds = [admission.admit_sync("k3", f"r{i}", plan, Decimal("0.1"), 10).reservation.free for i in range(4)]
    assert kinds == [True, True, False, False]
    assert account_item(tables, "k3")["balance"] == Decimal(5) - Decimal("0.2")


def test_settlement_happens_exactly_once(tables: Any) -> None:
    from gateway.accounts import account, admission, settlement
    from gateway.stats import counters

    plan = developer(free_requests=0)
    account.open_account("k4", plan)
    held = admission.admit_sync("k4", "r1", plan, Decimal("0.5"), 10).reservation
    assert settlement.settle_sync(held, sample("0.001"), "m", "p", {"id": "chatcmpl-x"}) == Decimal("0.001")
    assert settlement.settle_sync(held, sample("0.001"), "m", "p", {"id": "chatcmpl-x"}) is None
    state = account_item(tables, "k4")
    assert state["balance"] == Decimal(5) - Decimal("0.001")
    assert state["reservations"] == {}
    month = counters.read_key("k4", account.month_of(tallied()))
    assert (month["requests"], month["cost"], month["prompt_tokens"]) == (1, Decimal("0.001"), 10)


def test_a_retried_admission_that_already_landed_is_not_charged_twice(tables: Any) -> None:
    from gateway.accounts import account, admission
    from gateway.caches import reset_caches

    plan = developer(free_requests=0)
    account.open_account("k5", plan)
    admission.admit_sync("k5", "same", plan, Decimal("1"), 10)
    reset_caches()  # no guess from the first admission
    again = admission.admit_sync("k5", "same", plan, Decimal("1"), 10)  # the SDK's retry of a landed write
    state = account_item(tables, "k5")
    assert state["balance"] == 4
    assert state["req_n"] == 1
    assert again.reservation.amount == 1


def test_a_cost_beyond_the_reservation_is_carried_as_debt_until_a_top_up_covers_it(tables: Any) -> None:
    from gateway.accounts import account, admission, settlement

    plan = developer(free_requests=0, monthly_credit=Decimal(1))
    account.open_account("k6", plan)
    held = admission.admit_sync("k6", "r1", plan, Decimal("0.4"), 10).reservation
    assert settlement.settle_sync(held, sample("2.5")) == Decimal("2.5")  # all of it, not what was left
    state = account_item(tables, "k6")
    assert state["balance"] == Decimal("-1.5")
    assert state["held"] == 0
    assert account.credit_view(state)["debt"] == Decimal("1.5")
    with pytest.raises(admission.InsufficientCredit) as refused:
        admission.admit_sync("k6", "r2", plan, Decimal("0.01"), 10)
    assert refused.value.status == 402 and "owes $1.5" in refused.value.message
    # Not even a free request, nor a free model, gets through while the key is in debt.
    with pytest.raises(admission.InsufficientCredit):
        admission.admit_sync("k6", "r3", developer(free_requests=5, monthly_credit=Decimal(1)), Decimal("0.01"), 10)
    with pytest.raises(admission.InsufficientCredit):
        admission.admit_sync("k6", "r4", plan, Decimal(0), 10)
    account.top_up("k6", plan, Decimal(2))
    assert account.credit_view(account_item(tables, "k6"))["purchased"] == Decimal("0.5")  # the debt paid first
    assert admission.admit_sync("k6", "r5", plan, Decimal("0.4"), 10).reservation.amount == Decimal("0.4")


def _move_to_last_month(client: Any, key_id: str, *reservations: str) -> None:
    """Make the account and its open reservations belong to a month that has ended."""
    from gateway.accounts import account

    names = {"#m": "month", **{f"#r{i}": r for i, r in enumerate(reservations)}}
    if reservations:
        names["#res"] = "reservations"
    sets = ["#m = :old"] + [f"#res.#r{i}.#m = :old" for i in range(len(reservations))]
    client.update_item(
        TableName="unit-usage",
        Key=account.key(key_id),
        UpdateExpression="SET " + ", ".join(sets),
        ExpressionAttributeNames=names,
        ExpressionAttributeValues={":old": {"S": "2000-01"}},
    )


def test_monthly_credit_held_by_an_open_reservation_does_not_carry_into_the_next_month(tables: Any) -> None:
    from dataclasses import replace

    from gateway.accounts import account, admission, settlement

    plan = developer(free_requests=0)  # $5 a month
    account.open_account("k10", plan)
    held = admission.admit_sync("k10", "r1", plan, Decimal("4.99"), 10).reservation
    _move_to_last_month(tables, "k10", "r1")
    assert account.read("k10", plan)["balance"] == Decimal(5)  # the new month: $5, nothing carried
    assert settlement.settle_sync(replace(held, month="2000-01"), sample("0")) == 0
    state = account_item(tables, "k10")
    assert state["balance"] == Decimal(5)  # not $9.99: the refund went back to the month it came from
    assert state["held"] == 0 and state["reservations"] == {}


def test_purchased_credit_held_across_a_month_end_comes_back_exactly(tables: Any) -> None:
    from dataclasses import replace

    from gateway.accounts import account, admission, settlement

    plan = developer(free_requests=0)
    account.open_account("k11", plan)
    account.top_up("k11", plan, Decimal(10))  # $15: $5 monthly and $10 bought
    first = admission.admit_sync("k11", "r1", plan, Decimal(7), 10).reservation
    second = admission.admit_sync("k11", "r2", plan, Decimal(5), 10).reservation
    _move_to_last_month(tables, "k11", "r1", "r2")
    # Taken as charged in full, last month kept $3 of its $10 bought: the new month starts at $8.
    assert account.read("k11", plan)["balance"] == Decimal(8)
    settlement.settle_sync(replace(first, month="2000-01"), sample("1"))  # $6 back to last month
    assert account_item(tables, "k11")["balance"] == Decimal(14)  # ...all of it bought credit: $9 carried
    settlement.settle_sync(replace(second, month="2000-01"), sample("4"))  # $1 back: last month ends at $10
    state = account_item(tables, "k11")
    assert state["balance"] == Decimal(15)  # $5 monthly and the $10 bought, exactly as if settled in time
    assert account.credit_view(state)["purchased"] == Decimal(10)


def test_debt_carries_into_the_next_month_and_the_new_credit_pays_it(tables: Any) -> None:
    from gateway.accounts import account, admission, settlement

    plan = developer(free_requests=0)
    account.open_account("k12", plan)
    held = admission.admit_sync("k12", "r1", plan, Decimal("0.5"), 10).reservation
    settlement.settle_sync(held, sample("6.5"))  # $1.50 more than the $5 there was
    _move_to_last_month(tables, "k12")
    state = account.read("k12", plan)
    assert state["balance"] == Decimal("3.5")  # $5 less the $1.50 owed
    assert account.credit_view(state) == {
        "balance": Decimal("3.5"),
        "monthly": Decimal("3.5"),
        "purchased": 0,
        "reserved": 0,
        "debt": 0,
    }
    state = account.top_up("k12", plan, Decimal(2))
    assert account.credit_view(state)["purchased"] == Decimal(2)  # bought credit is not eaten by paid debt


def test_settlement_corrects_the_minute_window_to_the_tokens_used(tables: Any) -> None:
    from gateway.accounts import account, admission, settlement

    plan = developer(free_requests=0, tpm=1000)
    account.open_account("k13", plan)
    held = admission.admit_sync("k13", "r1", plan, Decimal("0.1"), 900).reservation
    assert account_item(tables, "k13")["tok_n"] == 900
    settlement.settle_sync(held, sample(prompt=60, completion=40))
    assert account_item(tables, "k13")["tok_n"] == 100  # the bound was held; what was used is kept
    assert admission.admit_sync("k13", "r2", plan, Decimal("0.1"), 900).tokens_used == 1000


def test_a_request_no_minute_could_admit_is_a_400_not_a_429(tables: Any) -> None:
    from gateway.accounts import account, admission
    from gateway.errors import GatewayError

    plan = developer(free_requests=0, tpm=1000)
    account.open_account("k14", plan)
    with pytest.raises(GatewayError) as refused:
        admission.admit_sync("k14", "r1", plan, Decimal("0.1"), 1001)
    assert refused.value.status == 400 and refused.value.code == "tokens_over_limit"


def test_a_free_request_that_produced_nothing_gives_its_slot_back(tables: Any) -> None:
    from gateway.accounts import account, admission, settlement

    plan = developer(free_requests=1)
    account.open_account("k7", plan)
    held = admission.admit_sync("k7", "r1", plan, Decimal("0.1"), 10).reservation
    assert held.free
    settlement.settle_sync(held, sample("0", prompt=0, completion=0, error=True))
    assert account_item(tables, "k7")["free_used"] == 0


def test_the_sweeper_charges_only_stale_reservations_in_full_and_only_once(tables: Any) -> None:
    from gateway.accounts import account, admission, settlement, sweeper
    from gateway.stats import counters

    plan = developer(free_requests=0)
    account.open_account("k8", plan)
    stale = admission.admit_sync("k8", "old", plan, Decimal("0.7"), 10).reservation
    admission.admit_sync("k8", "new", plan, Decimal("0.2"), 10)
    old_at = int(time.time()) - 2000
    tables.update_item(  # as if "old" had been taken 2000 s ago, when the account entered the index
        TableName="unit-usage",
        Key=account.key("k8"),
        UpdateExpression="SET reservations.#r.#at = :t, open_at = :t",
        ExpressionAttributeNames={"#r": "old", "#at": "at"},
        ExpressionAttributeValues={":t": {"N": str(old_at)}},
    )
    # Accounts whose reservations all settled, or that never had one, are not read at all.
    for quiet in ("q1", "q2", "q3"):
        account.open_account(quiet, plan)
    settlement.settle_sync(admission.admit_sync("q1", "done", plan, Decimal("0.1"), 10).reservation, sample())
    assert sweeper.sweep() == {"released": 1, "accounts": 1}
    state = account_item(tables, "k8")
    assert set(state["reservations"]) == {"new"}
    assert state["open_at"] == state["reservations"]["new"]["at"]  # re-indexed at the oldest still open
    # The stale one may have been served in full (its invocation died after the answer): charged what it held.
    assert state["balance"] == Decimal(5) - Decimal("0.2") - Decimal("0.7")
    assert state["held"] == Decimal("0.2")
    assert settlement.settle_sync(stale, sample()) is None  # the late request cannot settle what was charged
    assert sweeper.sweep()["released"] == 0
    assert counters.read_key("k8", account.month_of(tallied()))["errors"] == 1
    # Once nothing is open, a sweep that finds the account takes it out of the index.
    settlement.settle_sync(admission.admit_sync("k8", "last", plan, Decimal("0.1"), 10).reservation, sample())
    tables.update_item(
        TableName="unit-usage",
        Key=account.key("k8"),
        UpdateExpression="REMOVE reservations.#r SET open_at = :t",
        ExpressionAttributeNames={"#r": "new"},
        ExpressionAttributeValues={":t": {"N": str(old_at)}},
    )
    sweeper.sweep()
    assert "open_at" not in account_item(tables, "k8") and "open_shard" not in account_item(tables, "k8")


def test_the_local_emulator_rolls_a_cancelled_transaction_back(tmp_path: Path) -> None:
    """The item-level rollback of gateway.local.dynamodb keeps DynamoDB's all-or-nothing transactions."""
    from gateway.local import dynamodb

    with applied({"KEYS_TABLE": "", "USAGE_TABLE": ""}):
        local = dynamodb.start(0, prefix="rollback")
        try:
            client = boto3.client("dynamodb", endpoint_url=local.endpoint, region_name="us-east-1")
            table = local.tables["USAGE_TABLE"]
            key = {"pk": {"S": "a"}, "sk": {"S": "1"}}
            client.put_item(TableName=table, Item={**key, "n": {"N": "1"}})
            with pytest.raises(ClientError) as refused:
                client.transact_write_items(
                    TransactItems=[
                        {
                            "Update": {
                                "TableName": table,
                                "Key": key,
                                "UpdateExpression": "SET n = :two",
                                "ExpressionAttributeValues": {":two": {"N": "2"}},
                            }
                        },
                        {"Put": {"TableName": table, "Item": {"pk": {"S": "b"}, "sk": {"S": "1"}}}},
                        {
                            "Update": {
                                "TableName": table,
                                "Key": {"pk": {"S": "c"}, "sk": {"S": "1"}},
                                "UpdateExpression": "SET n = :two",
                                "ConditionExpression": "attribute_exists(n)",
                                "ExpressionAttributeValues": {":two": {"N": "2"}},
                            }
                        },
                    ]
                )
            assert refused.value.response["Error"]["Code"] == "TransactionCanceledException"
            assert client.get_item(TableName=table, Key=key)["Item"]["n"] == {"N": "1"}
            assert "Item" not in client.get_item(TableName=table, Key={"pk": {"S": "b"}, "sk": {"S": "1"}})
        finally:
            local.stop()


def test_a_free_request_that_costs_more_than_it_covers_is_charged_the_rest(tables: Any) -> None:
    """The attacker's review: a free request's overrun was written off; it is now debt."""
    from gateway.accounts import account, admission, plans, settlement
    from gateway.stats.counters import Sample

    plan = plans.get("free")
    account.open_account("free-overrun", plan)
    held = admission.admit_sync("free-overrun", "r1", plan, plan.free_request_cost, 10).reservation
    assert held.free and held.cover == plan.free_request_cost
    overrun = plan.free_request_cost + Decimal("0.65")  # a provider that counted differently from the bound
    assert settlement.settle_sync(held, Sample(10, 10, overrun, False, 1)) == Decimal("0.65")
    state = account.read("free-overrun", plan)
    assert state["balance"] == Decimal("-0.65") and state["free_used"] == 1  # carried as debt


def test_the_clock_the_writes_read_can_be_moved(tables: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Admission, settlement and the month's roll-over read one clock (storage/writes.py's CLOCK): a test
    moves it across a minute and a month instead of rewriting the account item."""
    from datetime import UTC, datetime

    from gateway.accounts import account, admission, settlement
    from gateway.errors import GatewayError
    from gateway.storage import writes

    plan = developer(free_requests=0, rpm=1)
    december = datetime(2031, 12, 31, 23, 58, 30, tzinfo=UTC).timestamp()
    monkeypatch.setattr(writes, "CLOCK", lambda: december)
    account.open_account("k-clock", plan, december)
    held = admission.admit_sync("k-clock", "r1", plan, Decimal("0.5"), 10).reservation
    with pytest.raises(GatewayError) as refused:  # one request a minute
        admission.admit_sync("k-clock", "r2", plan, Decimal("0.5"), 10)
    assert refused.value.status == 429
    monkeypatch.setattr(writes, "CLOCK", lambda: december + 60)  # the next minute
    admission.admit_sync("k-clock", "r2", plan, Decimal("0.5"), 10)
    monkeypatch.setattr(writes, "CLOCK", lambda: december + 120)  # the next month: 2032-01
    assert settlement.settle_sync(held, sample("0.1")) == Decimal("0.1")
    state = account.read("k-clock", plan)
    assert state["month"] == "2032-01" and state["balance"] == plan.monthly_credit  # fresh monthly credit
    assert set(state["reservations"]) == {"r2"}  # still open, held by the month it came from


def test_a_top_up_whose_answer_was_lost_is_credited_once(tables: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The write lands, its answer is lost, the SDK sends it again: the retry is refused, and the refusal shows
    that this very top-up landed, so it is not written a second time."""
    from gateway.accounts import account
    from gateway.storage import dynamo

    plan = developer()
    account.open_account("k-topup", plan)
    real = dynamo.send_sync
    landed = []

    def answer_lost(op: dynamo.Op) -> dict[str, Any]:
        if op.action == "UpdateItem" and "last_topup" in op.payload["UpdateExpression"] and not landed:
            landed.append(real(op))  # it lands ...
            return real(op)  # ... and the SDK's retry of it is what answers
        return real(op)

    monkeypatch.setattr(dynamo, "send_sync", answer_lost)
    state = account.top_up("k-topup", plan, Decimal("2.5"))
    assert landed and state["balance"] == Decimal(5) + Decimal("2.5") and state["purchased"] == Decimal("2.5")
    assert account_item(tables, "k-topup")["balance"] == Decimal("7.5")
