"""Usage counters from the usage table's stream (stats/tallies.py), on the session's moto server: exact, and
counted once however often Lambda delivers a batch."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from tests.support.moto import own_tables

TABLES = {"KeysTable": "tally-keys", "UsageTable": "tally-usage"}
KEYS = 60


@pytest.fixture
def tables(dynamodb_server: tuple[Any, dict[str, str]]) -> Iterator[Any]:
    with own_tables(dynamodb_server[1], TABLES) as client:
        yield client


def stream_records() -> list[dict[str, Any]]:
    """Every record the table's stream holds, as Lambda would be given them."""
    from gateway.storage import dynamo

    streams = dynamo.streams_client()
    arn = streams.list_streams(TableName=TABLES["UsageTable"])["Streams"][-1]["StreamArn"]
    records = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")
        page = streams.get_records(ShardIterator=iterator["ShardIterator"], Limit=1000)
        records += page["Records"]
    return records


def new_tallies() -> list[dict[str, Any]]:
    """The stream's new records that carry a tally: what TallyFunction's filter passes it (template.yaml)."""
    return [r for r in stream_records() if r["eventName"] == "INSERT" and "tally" in r["dynamodb"]["NewImage"]]


def settle(key_id: str, cost: str, model: str = "m1", provider: str | None = "p1", record: bool = True) -> None:
    from gateway.accounts import account, admission, plans, settlement
    from gateway.stats import generations
    from gateway.stats.counters import Sample

    plan = replace(plans.get("developer"), free_requests=0)  # billed, so the counters show each cost
    account.open_account(key_id, plan)
    rid = generations.new_id()
    held = admission.admit_sync(key_id, rid, plan, Decimal("0.5"), 10).reservation
    sample = Sample(10, 5, Decimal(cost), False, 100, provider_cost=Decimal(cost) / 2)
    settlement.settle_sync(held, sample, model, provider, {"id": rid} if record else None)


def month(key_id: str) -> dict[str, Any]:
    from gateway.accounts import account
    from gateway.stats import counters

    return counters.read_key(key_id, account.month_of(time.time()))


def test_the_counters_are_the_exact_sums_of_what_was_billed(tables: Any) -> None:
    from gateway.accounts import account
    from gateway.stats import counters, tallies
    from gateway.storage import schema

    costs = {"ka": ["0.1", "0.000001", "1.23456789"], "kb": ["0.3"]}
    for key_id, amounts in costs.items():
        for amount in amounts:
            settle(key_id, amount)
    settle("kb", "0", model="m2", provider=None, record=False)  # a bare tally (a release): counted all the same
    assert tallies.count(stream_records(), time.time()) == 1  # one batch, one transaction
    assert month("ka")["requests"] == 3 and month("ka")["cost"] == Decimal("1.33456889")
    assert month("kb")["requests"] == 2 and month("kb")["provider_cost"] == Decimal("0.15")
    day = account.day_of(time.time())
    shared = counters.read_shared_many([schema.ALL_SCOPE, schema.model_scope("m2"), schema.provider_scope("p1")], day)
    assert shared[schema.ALL_SCOPE]["requests"] == 5
    assert shared[schema.ALL_SCOPE]["cost"] == Decimal("1.63456889")
    assert shared[schema.model_scope("m2")]["requests"] == 1
    assert shared[schema.provider_scope("p1")]["prompt_tokens"] == 40


def test_a_batch_delivered_again_is_not_counted_again(tables: Any) -> None:
    from gateway.stats import tallies

    settle("kc", "0.25")
    settle("kc", "0.5")
    records = stream_records()
    assert tallies.count(records, time.time()) == 1
    assert tallies.count(records, time.time()) == 0  # Lambda retried a batch whose transaction had landed
    assert month("kc")["requests"] == 2 and month("kc")["cost"] == Decimal("0.75")


def test_a_batch_that_failed_midway_is_counted_whole_when_delivered_again(
    tables: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More counters than one transaction takes: the batch goes in parts; a part that failed is counted on the
    next delivery, and the parts that had landed are not counted twice."""
    from gateway.stats import tallies
    from gateway.storage import dynamo

    for n in range(KEYS):  # a day and a month counter each, and the shared ones: over 99 updates
        settle(f"many{n}", "0.01")
    records = stream_records()
    real = dynamo.send_sync
    sent = []

    def second_part_fails(op: dynamo.Op) -> dict[str, Any]:
        if op.action == "TransactWriteItems":
            sent.append(op)
            if len(sent) == 2:
                raise dynamo.StoreUnavailable("InternalServerError", "gone", 500)
        return real(op)

    monkeypatch.setattr(dynamo, "send_sync", second_part_fails)
    with pytest.raises(dynamo.StoreUnavailable):
        tallies.count(records, time.time())
    monkeypatch.setattr(dynamo, "send_sync", real)
    assert month("many0")["requests"] + month(f"many{KEYS - 1}")["requests"] == 1  # the first part only
    assert tallies.count(records, time.time()) == 1  # the part that had failed
    assert all(month(f"many{n}")["requests"] == 1 for n in range(KEYS))
    assert tallies.count(records, time.time()) == 0


def test_records_delivered_again_in_other_batches_are_counted_once(tables: Any) -> None:
    """Lambda may deliver records again with other boundaries (a new event source mapping reads the last
    24 hours afresh): each record carries its own mark, so the second delivery adds only what is new."""
    from gateway.stats import tallies

    settle("ke", "0.1")
    settle("ke", "0.2")
    first = new_tallies()
    assert tallies.count(first, time.time()) == 1
    settle("ke", "0.3")
    again = new_tallies()
    assert len(again) == 3 and tallies.count(again, time.time()) == 1
    assert tallies.count(again[1:], time.time()) == 0
    assert month("ke")["requests"] == 3 and month("ke")["cost"] == Decimal("0.6")
    settle("ke", "0.4")
    (newest,) = [r for r in new_tallies() if r["eventID"] not in {a["eventID"] for a in again}]
    assert tallies.count([newest, newest], time.time()) == 1  # twice in one batch: one item, counted once
    assert month("ke")["requests"] == 4 and month("ke")["cost"] == Decimal("1.0")


def test_a_charge_with_no_model_counts_in_the_gateway_totals(tables: Any) -> None:
    """A sweep or a release settles with no model: the gateway's totals still add up to what was billed."""
    from gateway.accounts import account
    from gateway.stats import counters, tallies
    from gateway.storage import schema

    settle("kf", "0.25", model="m9", provider="p9")
    settle("kf", "0.5", model=None, provider=None, record=False)
    tallies.count(stream_records(), time.time())
    day = account.day_of(time.time())
    shared = counters.read_shared_many([schema.ALL_SCOPE, schema.model_scope("m9")], day)
    assert shared[schema.ALL_SCOPE]["cost"] == Decimal("0.75") == month("kf")["cost"]
    assert shared[schema.model_scope("m9")]["cost"] == Decimal("0.25")


def test_records_without_a_tally_are_not_counted(tables: Any) -> None:
    from gateway.stats import tallies

    settle("kd", "0.1")
    records = stream_records()
    untallied = [r for r in records if "tally" not in r["dynamodb"].get("NewImage", {})]
    assert untallied  # the account item's own changes
    assert tallies.count(untallied, time.time()) == 0
    assert month("kd")["requests"] == 0
