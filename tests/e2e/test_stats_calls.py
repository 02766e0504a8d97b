"""Every statistics read costs a fixed number of DynamoDB calls: the same at 10 and at 10,000 requests.

The calls are counted on the gateway's own DynamoDB clients (a botocore `before-call` hook on
`gateway.storage.dynamo.client()`, and the request path's lean client for the key lookup, which the
in-process gateway server uses) while each read
goes through HTTP. The traffic is seeded straight into DynamoDB with boto3, as settlement
would have written it (generation records in the key's partition, the key's day and month
counters, the sharded gateway, model and provider counters), which is far faster than
sending 10,000 requests.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import boto3
import httpx
import pytest

from tests.support.money import usd

SMALL, LARGE = 10, 10_000
PRICE = Decimal("0.000125")  # what each seeded request cost
OWN_REGION = "eu-west-3"  # this module's tables: apart from the shared ones


@contextlib.contextmanager
def quicker_moto() -> Iterator[None]:
    """moto answers every Query by sorting the whole table with DynamoType comparisons: seconds at
    10,000 items, so reads would time out. Sort by the very same values, computed once per item,
    while this module runs: results are unchanged, only the emulator gets faster."""
    from moto.dynamodb.models.table import Table

    original = Table.all_items

    def value(v: Any) -> Any:
        return v.value if v.type == "S" else v.cast_value  # what DynamoType's comparisons compare

    def order(item: Any) -> tuple[Any, ...]:
        return (value(item.hash_key), value(item.range_key)) if item.range_key else (value(item.hash_key),)

    def all_items(self: Any) -> list[Any]:
        groups = self.items.values()
        return sorted([i for g in groups for i in g.values()] if self.range_key_attr else list(groups), key=order)

    Table.all_items = all_items  # type: ignore[method-assign]
    try:
        yield
    finally:
        Table.all_items = original  # type: ignore[method-assign]


@pytest.fixture(scope="module")
def own_dynamo(e2e_env: Any) -> Iterator[Any]:
    """Tables of this module's own, for the gateway while this module runs.

    10,000 requests' worth of items would slow every other module's queries on the shared
    emulator, so they go to the same moto server's tables in another region (moto keeps each
    region apart), which are deleted when this module ends.
    """
    from gateway.local.dynamodb import TEMPLATE
    from gateway.storage import tables
    from tests.support.stack import applied

    env = {**e2e_env.env, "AWS_REGION": OWN_REGION, "AWS_DEFAULT_REGION": OWN_REGION}
    with applied(env), quicker_moto():
        client = seeder()
        names = {logical: os.environ[variable] for logical, variable in tables.TABLE_ENV.items()}
        tables.create_all(client, TEMPLATE, names)
        try:
            yield client
        finally:
            for name in names.values():
                client.delete_table(TableName=name)


def usage_table() -> str:
    from gateway.config import settings

    return settings().usage_table


def seeder() -> Any:
    """A boto3 client of its own, so seeding is not counted against the gateway's."""
    return boto3.client(
        "dynamodb",
        endpoint_url=os.environ["AWS_ENDPOINT_URL_DYNAMODB"],
        region_name=os.environ["AWS_REGION"],
    )


def counter_values(requests: int, streams: int = 0, errors: int = 0) -> dict[str, Any]:
    """A counter item's attributes after `requests` requests, as settlement's ADDs leave them."""
    return {
        "requests": requests,
        "errors": errors,
        "prompt_tokens": 11 * requests,
        "completion_tokens": 7 * requests,
        "cost": PRICE * requests,
        "latency_ms": 120 * requests,
        "ttft_ms": 40 * streams,
        "streams": streams,
    }


def generation_record(key_id: str, ts: float, model: str, provider: str, streamed: bool) -> dict[str, Any]:
    """A generation record as settlement writes it (the fields of chat.call.Call.record)."""
    from gateway.stats import generations

    gid = generations.new_id(ts)
    return {
        "pk": f"KEY#{key_id}",
        "sk": f"GEN#{gid}",
        "id": gid,
        "request_id": f"req_{random.getrandbits(128):032x}",
        "created": int(ts),
        "model": model,
        "provider": provider,
        "upstream_model": model,
        "streamed": streamed,
        "status": "ok",
        "http_status": 200,
        "finish_reason": "stop",
        "prompt_tokens": 11,
        "completion_tokens": 7,
        "usage_reported": True,
        "latency_ms": 120,
        "ttft_ms": 40 if streamed else None,
        "cost": PRICE,
        "expires_at": int(ts) + generations.ttl_days() * 86400,
    }


def batch_put(client: Any, items: list[dict[str, Any]]) -> None:
    """BatchWriteItem, 25 items a call, until DynamoDB has taken every one."""
    from gateway.storage import dynamo

    table = usage_table()
    for start in range(0, len(items), 25):
        pending = {table: [{"PutRequest": {"Item": dynamo.to_item(i)}} for i in items[start : start + 25]]}
        while pending:
            pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}


def seed(key_id: str, already: int, total: int, history: bool) -> None:
    """The state settlement leaves after `total` requests of `key_id` today (`already` of them seeded before).

    Request i used model i mod M (served by its first provider) and shard i mod SHARDS, and every
    other one was streamed: generation records for requests `already`..`total`, and the key's,
    gateway's, models' and providers' counters holding all `total`. With `history`, also every
    earlier day of the month and two years of months behind it.
    """
    from gateway.catalog import catalog
    from gateway.stats.counters import COUNTER_TTL_DAYS, SHARDS
    from gateway.storage.schema import stats_pk as shard_pk

    now = time.time()
    day = datetime.fromtimestamp(now, UTC).date()
    start = datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
    expires = int(now) + COUNTER_TTL_DAYS * 86400
    models = [(m.id, m.offerings[0].provider) for m in catalog().models.values() if m.offerings]
    items: list[dict[str, Any]] = []
    for i in range(already, total):
        model, provider = models[i % len(models)]
        ts = start + (now - start) * (i + 1) / (total + 1)  # spread over today, in order
        items.append(generation_record(key_id, ts, model, provider, streamed=i % 2 == 1))

    shards: dict[tuple[str, int], list[int]] = {}  # (scope, shard) -> [requests, streams]
    for i in range(total):
        model, provider = models[i % len(models)]
        for scope in ("ALL", f"MODEL#{model}", f"PROVIDER#{provider}"):
            counts = shards.setdefault((scope, i % SHARDS), [0, 0])
            counts[0] += 1
            counts[1] += i % 2
    today = day.isoformat()
    for (scope, shard), (n, streams) in shards.items():
        item = {"pk": shard_pk(scope, today, shard), "sk": "TOTAL", **counter_values(n, streams)}
        items.append({**item, "expires_at": expires})
    key_today = counter_values(total, total // 2)
    month = dict(key_today)
    if history:
        for d in range(1, day.day):
            earlier = day.replace(day=d).isoformat()
            past = counter_values(300, 150, errors=3)
            items.append({"pk": f"KEY#{key_id}", "sk": f"DAY#{earlier}", **past, "expires_at": expires})
            month = {name: month[name] + past[name] for name in month}
            items += [
                {"pk": shard_pk("ALL", earlier, n), "sk": "TOTAL", **counter_values(900), "expires_at": expires}
                for n in range(SHARDS)
            ]
        for back in range(1, 25):
            year, index = divmod(day.year * 12 + day.month - 1 - back, 12)
            items.append({"pk": f"KEY#{key_id}", "sk": f"MONTH#{year:04d}-{index + 1:02d}", **counter_values(9000)})
    items.append({"pk": f"KEY#{key_id}", "sk": f"DAY#{today}", **key_today, "expires_at": expires})
    items.append({"pk": f"KEY#{key_id}", "sk": f"MONTH#{today[:7]}", **month})
    batch_put(seeder(), items)


@contextlib.contextmanager
def counting() -> Iterator[Counter[str]]:
    """Every DynamoDB call the gateway makes meanwhile, as `Operation@table` (keys or usage)."""
    from gateway.config import settings
    from gateway.storage import dynamo

    calls: Counter[str] = Counter()
    lock = threading.Lock()
    keys_table = settings().keys_table

    def hook(model: Any, params: dict[str, Any], **_: Any) -> None:
        body = json.loads(params["body"] or b"{}")  # before-call sees the serialized request
        tables = [body["TableName"]] if "TableName" in body else list(body.get("RequestItems", {}))
        where = "keys" if keys_table in tables else "usage"
        with lock:
            calls[f"{model.name}@{where}"] += 1

    from gateway.storage import client

    real = client.DynamoClient.send

    async def lean(self: Any, op: Any) -> Any:  # the request path's own client: the key lookup
        hook(type("Model", (), {"name": op.action}), {"body": json.dumps(op.payload).encode()})
        return await real(self, op)

    events = dynamo.client().meta.events
    events.register("before-call.dynamodb.*", hook, unique_id="stats-call-count")
    client.DynamoClient.send = lean  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        client.DynamoClient.send = real  # type: ignore[method-assign]
        events.unregister("before-call.dynamodb.*", unique_id="stats-call-count")


READS: dict[str, tuple[str, str, dict[str, Any]]] = {  # name -> (which key, path, query)
    "GET /v1/stats": ("caller", "/v1/stats", {}),
    "GET /v1/stats?scope=gateway": ("admin", "/v1/stats", {"scope": "gateway"}),
    "GET /v1/key": ("caller", "/v1/key", {}),
    "GET /v1/credits": ("caller", "/v1/credits", {}),
    "GET /v1/generations": ("caller", "/v1/generations", {"limit": 100}),
    "GET /v1/generation": ("caller", "/v1/generation", {"id": None}),
    "GET /v1/generations (next page)": ("caller", "/v1/generations", {"limit": 100, "cursor": None}),
    "GET /api/stats": ("caller", "/api/stats", {}),
    "GET /api/models": ("none", "/api/models", {}),
}


def measure(base: str, keys: dict[str, str]) -> tuple[dict[str, dict[str, int]], dict[str, Any]]:
    """Each read's DynamoDB calls (provider health read afresh: its worst case), and what it returned."""
    from gateway.routing import health

    counts: dict[str, dict[str, int]] = {}
    bodies: dict[str, Any] = {}
    first_page: dict[str, Any] = {}
    with httpx.Client(base_url=base, timeout=30, trust_env=False) as http:
        for name, (who, path, params) in READS.items():
            params = dict(params)
            if "id" in params:
                params["id"] = first_page["data"][0]["id"]
            if "cursor" in params:
                # the next page (at 10 requests there is none: the page after the last record, empty)
                params["cursor"] = first_page["next_cursor"] or first_page["data"][-1]["id"]
            headers = {"authorization": f"Bearer {keys[who]}"} if who in keys else {}
            health.forget()  # shared by every read that shows provider health: count its BatchGetItem
            with counting() as calls:
                response = http.get(path, params=params, headers=headers)
            assert response.status_code == 200, (name, response.text)
            counts[name] = dict(sorted(calls.items()))
            bodies[name] = response.json()
            if name == "GET /v1/generations":
                first_page = bodies[name]
    return counts, bodies


def expected(days_so_far: int) -> dict[str, dict[str, int]]:
    """The fixed cost of each read (auth: one GetItem on the keys table, as KEY_CACHE_SECONDS is 0 here)."""
    from gateway.catalog import catalog
    from gateway.stats.counters import SHARDS

    auth = {"GetItem@keys": 1}
    health_read = {"BatchGetItem@usage": 1}  # under 100 configured providers
    scopes = len(catalog().models) + len(catalog().providers)
    month_batches = math.ceil(days_so_far * SHARDS / 100)  # the gateway's shards of every day so far
    scope_batches = math.ceil(scopes * SHARDS / 100)  # today's shards of every model and provider
    return {
        "GET /v1/stats": {**auth, "GetItem@usage": 1, "Query@usage": 1, **health_read},
        "GET /v1/stats?scope=gateway": {**auth, "BatchGetItem@usage": month_batches + scope_batches + 1},
        "GET /v1/key": {**auth, "GetItem@usage": 1, "Query@usage": 2},
        "GET /v1/credits": {**auth, "GetItem@usage": 1, "Query@usage": 1},
        "GET /v1/generation": {**auth, "GetItem@usage": 1},
        "GET /v1/generations": {**auth, "Query@usage": 1},
        "GET /v1/generations (next page)": {**auth, "Query@usage": 1},
        "GET /api/stats": {**auth, "GetItem@usage": 1, **health_read},
        "GET /api/models": {},
    }


def test_every_read_costs_the_same_at_10_and_10000_requests(
    gateway_url: str, own_dynamo: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.stats.counters import SHARDS
    from tests.support.keys import make_key

    caller, record = make_key(name="heavy")
    admin, _ = make_key(name="admin", admin=True)
    keys = {"caller": caller, "admin": admin}
    base = gateway_url.removesuffix("/v1")

    seed(record.key_id, 0, SMALL, history=False)
    small, small_bodies = measure(base, keys)
    started = time.monotonic()
    seed(record.key_id, SMALL, LARGE, history=True)
    seeding = time.monotonic() - started
    large, large_bodies = measure(base, keys)

    # The seeded traffic is what the reads show...
    assert small_bodies["GET /v1/stats"]["requests_today"] == SMALL
    assert large_bodies["GET /v1/stats"]["requests_today"] == LARGE
    assert large_bodies["GET /api/stats"]["requests_today"] == LARGE
    assert usd(large_bodies["GET /v1/stats"]["today"]["cost"]) == PRICE * LARGE
    assert len(small_bodies["GET /v1/generations"]["data"]) == SMALL
    assert small_bodies["GET /v1/generations"]["next_cursor"] is None
    assert len(large_bodies["GET /v1/generations"]["data"]) == 100
    assert len(large_bodies["GET /v1/generations (next page)"]["data"]) == 100
    assert small_bodies["GET /v1/generations (next page)"]["data"] == []
    first = large_bodies["GET /v1/generations"]["data"]
    second = large_bodies["GET /v1/generations (next page)"]["data"]
    assert first[-1]["id"] > second[0]["id"]  # the next page continues, older
    days_so_far = datetime.now(UTC).day
    gateway = large_bodies["GET /v1/stats?scope=gateway"]
    assert gateway["requests_today"] == LARGE  # this module's own DynamoDB: nothing else counted
    assert gateway["month"]["requests"] == LARGE + 900 * SHARDS * (days_so_far - 1)
    assert sum(m["requests"] for m in gateway["models"]) == LARGE
    assert sum(p["requests"] for p in gateway["providers"]) == LARGE
    info = large_bodies["GET /v1/key"]["data"]
    assert usd(info["usage"]) == usd(info["usage_monthly"]) + 24 * 9000 * PRICE

    # ...and each read cost exactly as many calls at 10 requests as at 10,000.
    assert small == large
    assert large == expected(days_so_far)

    with capsys.disabled():
        print(f"\nDynamoDB calls per read (10 vs 10,000 requests; seeding {seeding:.1f}s):")
        for name in READS:
            print(f"  {name:34} {small[name]}  |  {large[name]}")
