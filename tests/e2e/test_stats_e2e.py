"""Statistics end to end: the figures move exactly with the traffic the gateway billed.

Real servers only (moto's DynamoDB, the fake upstream, the gateway under uvicorn), the official
`openai` SDK sending the traffic and raw HTTP reading the statistics routes:
GET /v1/stats, /v1/key, /v1/credits, /v1/generation, /v1/generations, and the unified API's
/api/models(.php) and /api/stats(.php).
"""

from __future__ import annotations

import io
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import httpx
import openai
import pytest

from tests.support.kit import tallied, user
from tests.support.money import usd
from tests.support.openapi import validate_error, validate_unified_error

MakeKey = Callable[..., tuple[str, Any]]
FIVE = {"requests_today", "tokens_used", "avg_latency", "success_rate", "active_providers"}
SUMMARY = {
    "requests",
    "errors",
    "streams",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost",
    "avg_latency_ms",
    "avg_ttft_ms",
    "success_rate",
}


def http_for(gateway_url: str, key: str | None) -> httpx.Client:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=gateway_url.removesuffix("/v1"), headers=headers, timeout=15, trust_env=False)


def sdk(gateway_url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway_url, api_key=key, max_retries=0, timeout=15)


def get(gateway_url: str, key: str | None, path: str, **params: Any) -> httpx.Response:
    with http_for(gateway_url, key) as h:
        return h.get(path, params=params)


def stats(gateway_url: str, key: str, **params: Any) -> dict[str, Any]:
    response = get(gateway_url, key, "/v1/stats", **params)
    assert response.status_code == 200, response.text
    return response.json()


def today() -> str:
    return datetime.now(UTC).date().isoformat()


def cost_of(usage: Any) -> Decimal:
    """usage.cost as the gateway returned it (a JSON number), exactly as written."""
    extra = usage.model_extra or {}
    return Decimal(repr(extra["cost"]))


def whole(client: openai.OpenAI, model: str, text: str) -> Any:
    return client.chat.completions.create(model=model, messages=user(text))


def streamed(client: openai.OpenAI, model: str, text: str) -> tuple[str, Any]:
    """(generation id, the usage chunk's usage) of one streamed answer."""
    usage, gid = None, None
    for chunk in client.chat.completions.create(model=model, messages=user(text), stream=True):
        gid = chunk.id
        if chunk.usage is not None:
            usage = chunk.usage
    assert gid and usage is not None
    return gid, usage


def healthy(provider: str, upstream_model: str) -> None:
    """Forget the failures of one upstream model (earlier modules may have cooled it down), so a
    request to it reaches it and fails there, rather than being refused before admission."""
    from gateway.config import settings
    from gateway.routing import health

    dynamo = boto3.client("dynamodb", endpoint_url=os.environ["AWS_ENDPOINT_URL_DYNAMODB"])
    dynamo.update_item(
        TableName=settings().usage_table,
        Key={"pk": {"S": f"PROVIDER#{provider}"}, "sk": {"S": "STATE"}},
        UpdateExpression="REMOVE #f, #c",
        ExpressionAttributeNames={"#f": f"fail:{upstream_model}", "#c": f"cool:{upstream_model}"},
    )
    health.forget(provider)


@pytest.fixture
def paying_key(make_key: MakeKey) -> tuple[str, Any]:
    """A key with no free requests, so every priced request is charged (and counted with its cost)."""
    return make_key(name="stats", free_requests=0)


# --- the caller's statistics move exactly with its traffic ------------------------------------


def test_stats_of_a_new_key_are_zero(gateway_url: str, paying_key: tuple[str, Any]) -> None:
    key, record = paying_key
    body = stats(gateway_url, key)
    assert body["scope"] == "key" and body["key_id"] == record.key_id and body["date"] == today()
    assert body["requests_today"] == 0 and body["tokens_used"] == 0 and body["avg_latency"] == 0
    assert body["success_rate"] is None  # no requests: no rate
    assert body["today"]["cost"] == "0" and body["month"]["cost"] == "0"
    assert set(body["today"]) == SUMMARY and set(body["month"]) > SUMMARY
    daily = body["daily"]
    assert [d["date"] for d in daily] == [
        (datetime.now(UTC).date().replace(day=1) + timedelta(days=i)).isoformat() for i in range(len(daily))
    ]
    assert daily[-1]["date"] == today() and all(d["requests"] == 0 for d in daily)
    assert body["credit"] == {
        "balance": "1000",
        "monthly_remaining": "1000",
        "purchased_remaining": "0",
        "reserved": "0",
        "debt": "0",
    }
    assert body["plan"] == {
        "id": "startup",
        "name": "Startup",
        "monthly_credit": "1000",
        "free_requests": 0,
        "free_requests_used": 0,
        "free_request_cost": "1",
        "rpm": 100_000,
        "tpm": 100_000_000,
        "allowed_models": None,
    }


def test_whole_and_streamed_requests_are_counted_exactly(
    gateway_url: str, paying_key: tuple[str, Any], marker: str
) -> None:
    key, _ = paying_key
    client = sdk(gateway_url, key)
    before = stats(gateway_url, key)
    usages: list[Any] = []
    whole_n, streamed_n = 3, 2
    for i in range(whole_n):
        model = "gateway-echo" if i == 0 else "fake-ok"  # free and priced
        usages.append(whole(client, model, f"{marker} whole {i}").usage)
    for i in range(streamed_n):
        usages.append(streamed(client, "fake-ok", f"{marker} streamed {i}")[1])

    after = stats(gateway_url, key)
    requests = whole_n + streamed_n
    tokens = sum(u.total_tokens for u in usages)
    cost = sum((cost_of(u) for u in usages), Decimal(0))
    assert cost > 0
    assert after["requests_today"] - before["requests_today"] == requests
    assert after["tokens_used"] - before["tokens_used"] == tokens
    today_ = after["today"]
    assert today_["requests"] == requests and today_["errors"] == 0 and today_["streams"] == streamed_n
    assert today_["prompt_tokens"] == sum(u.prompt_tokens for u in usages)
    assert today_["completion_tokens"] == sum(u.completion_tokens for u in usages)
    assert usd(today_["cost"]) == cost
    assert after["success_rate"] == 1.0
    assert today_["avg_ttft_ms"] is not None and today_["avg_latency_ms"] >= 0
    assert after["avg_latency"] == today_["avg_latency_ms"]
    # A fresh key: the month so far is today, and the chart's last point is today.
    assert {k: after["month"][k] for k in SUMMARY} == today_
    point = after["daily"][-1]
    assert point == {
        "date": today(),
        "requests": requests,
        "tokens": tokens,
        "cost": today_["cost"],
        "errors": 0,
    }
    # What was counted is what was charged: the balance fell by exactly the cost.
    assert usd(after["credit"]["balance"]) == Decimal(1000) - cost
    assert after["credit"]["reserved"] == "0"


def test_failures_and_cut_streams_are_counted(gateway_url: str, paying_key: tuple[str, Any], marker: str) -> None:
    key, _ = paying_key
    client = sdk(gateway_url, key)
    healthy("fake", "error-500")
    with pytest.raises(openai.APIStatusError) as failed:
        whole(client, "fake-error-500", f"{marker} fails")
    assert failed.value.status_code == 502
    whole(client, "fake-ok", f"{marker} ok")  # the fake provider answers again: its failure count restarts
    cut_id = None
    with pytest.raises(openai.APIError):
        for chunk in client.chat.completions.create(model="fake-cut", messages=user(f"{marker} cut"), stream=True):
            cut_id = chunk.id
    assert cut_id

    body = stats(gateway_url, key)
    assert body["requests_today"] == 3
    assert body["today"]["errors"] == 2
    assert body["success_rate"] == round(1 - 2 / 3, 4)
    assert body["daily"][-1]["errors"] == 2

    # The cut stream is billed for what it delivered, and counted with exactly that.
    cut = get(gateway_url, key, "/v1/generation", id=cut_id).json()["data"]
    assert cut["status"] == "error" and cut["streamed"] is True and cut["tokens_completion"] > 0
    listing = get(gateway_url, key, "/v1/generations").json()["data"]
    assert len(listing) == 3
    by_model = {g["model"]: g for g in listing}
    assert by_model["fake-error-500"]["status"] == "error"
    assert by_model["fake-error-500"]["total_cost"] == 0  # nothing delivered, nothing charged
    assert by_model["fake-error-500"]["http_status"] == 502
    assert body["tokens_used"] == sum(g["total_tokens"] for g in listing)
    assert Decimal(body["today"]["cost"]) == sum((Decimal(repr(g["total_cost"])) for g in listing), Decimal(0))


# --- admin scope ------------------------------------------------------------------------------


def test_gateway_scope_needs_an_admin_key(gateway_url: str, api_key: str) -> None:
    response = get(gateway_url, api_key, "/v1/stats", scope="gateway")
    assert response.status_code == 403
    validate_error(response.json())
    assert response.json()["error"]["type"] == "permission_error"
    assert response.json()["error"]["param"] == "scope"
    assert response.headers["x-should-retry"] == "false"
    bad = get(gateway_url, api_key, "/v1/stats", scope="everything")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "scope"


def test_gateway_scope_sums_every_key(gateway_url: str, make_key: MakeKey, marker: str) -> None:
    from gateway.catalog import catalog

    admin, _ = make_key(name="admin", admin=True)
    caller, _ = make_key(name="caller", free_requests=0)
    before = stats(gateway_url, admin, scope="gateway")
    client = sdk(gateway_url, caller)
    usages = [whole(client, "fake-ok", f"{marker} {i}").usage for i in range(3)]
    usages.append(streamed(client, "gateway-echo", f"{marker} echo")[1])
    after = stats(gateway_url, admin, scope="gateway")

    assert after["scope"] == "gateway" and "credit" not in after and "key_id" not in after
    assert set(after) >= FIVE
    # Other modules' late settlements may land too; ours are all there.
    assert after["requests_today"] - before["requests_today"] >= 4
    assert after["tokens_used"] - before["tokens_used"] >= sum(u.total_tokens for u in usages)
    assert usd(after["today"]["cost"]) - usd(before["today"]["cost"]) >= sum((cost_of(u) for u in usages), Decimal(0))
    models = {m["id"]: m for m in after["models"]}
    assert list(models) == list(catalog().models)  # one row per catalog model, whatever the traffic
    old = {m["id"]: m for m in before["models"]}
    assert models["fake-ok"]["requests"] - old["fake-ok"]["requests"] >= 3
    assert models["gateway-echo"]["streams"] - old["gateway-echo"]["streams"] >= 1
    providers = {p["id"]: p for p in after["providers"]}
    assert list(providers) == list(catalog().providers)
    assert providers["fake"]["available"] and providers["fake"]["ready"]
    assert providers["fake-offline"]["available"] is False and providers["fake-offline"]["ready"] is False
    assert providers["fake"]["requests"] >= 3 and providers["builtin"]["requests"] >= 1
    assert after["daily"][-1]["date"] == today()
    assert after["daily"][-1]["requests"] == after["requests_today"]
    ready = sum(1 for p in after["providers"] if p["ready"])
    assert after["active_providers"] == ready >= 3  # builtin, fake and fake2 at least

    # The same admin key's own scope is still its own.
    own = stats(gateway_url, admin)
    assert own["scope"] == "key" and own["requests_today"] == 0


# --- generations ------------------------------------------------------------------------------


def test_a_generation_is_readable_by_its_owner_only(gateway_url: str, make_key: MakeKey, marker: str) -> None:
    owner, owner_record = make_key(name="owner", free_requests=0)
    other, _ = make_key(name="other")
    answer = sdk(gateway_url, owner).chat.completions.with_raw_response.create(
        model="fake-ok", messages=user(f"{marker} mine")
    )
    completion = answer.parse()
    gid = completion.id

    response = get(gateway_url, owner, "/v1/generation", id=gid)
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["id"] == gid and data["model"] == "fake-ok"
    assert data["provider"] == "fake" and data["provider_name"] == "Fake upstream"
    assert data["upstream_model"] == "ok" and data["streamed"] is False and data["cancelled"] is False
    assert data["tokens_prompt"] == completion.usage.prompt_tokens
    assert data["tokens_completion"] == completion.usage.completion_tokens
    assert data["total_cost"] == data["usage"] == data["cost"] and isinstance(data["total_cost"], float)
    assert Decimal(repr(data["total_cost"])) == Decimal(answer.headers["x-gateway-cost"]) == cost_of(completion.usage)
    assert data["finish_reason"] == "stop" and data["status"] == "ok" and data["http_status"] == 200
    assert isinstance(data["latency"], int) and data["latency"] == data["latency_ms"]
    assert datetime.fromisoformat(data["created_at"]) <= datetime.now(UTC)
    assert datetime.fromisoformat(data["expires_at"]) > datetime.now(UTC) + timedelta(days=29)

    for key, params in ((other, {"id": gid}), (owner, {"id": gid + "0"}), (owner, {"id": "x" * 5000})):
        missing = get(gateway_url, key, "/v1/generation", **params)
        assert missing.status_code == 404, missing.text
        validate_error(missing.json())
        assert missing.json()["error"]["param"] == "id"
    no_id = get(gateway_url, owner, "/v1/generation")
    assert no_id.status_code == 400 and no_id.json()["error"]["param"] == "id"
    validate_error(no_id.json())
    assert get(gateway_url, None, "/v1/generation", id=gid).status_code == 401
    assert owner_record.key_id not in json.dumps(get(gateway_url, other, "/v1/generations").json())


def test_generations_are_listed_newest_first_a_page_at_a_time(gateway_url: str, make_key: MakeKey, marker: str) -> None:
    key, _ = make_key(name="pages")
    client = sdk(gateway_url, key)
    made = [whole(client, "gateway-echo", f"{marker} {i}").id for i in range(5)]

    seen: list[str] = []
    pages = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        response = get(gateway_url, key, "/v1/generations", **params)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["date"] == today()
        pages.append(len(body["data"]))
        seen += [g["id"] for g in body["data"]]
        cursor = body["next_cursor"]
        assert body["has_more"] is (cursor is not None)
        if cursor is None:
            break
    assert pages == [2, 2, 1]
    assert seen == list(reversed(made))  # newest first, each once
    everything = get(gateway_url, key, "/v1/generations").json()
    assert [g["id"] for g in everything["data"]] == seen and everything["next_cursor"] is None
    exact = get(gateway_url, key, "/v1/generations", limit=5).json()
    assert len(exact["data"]) == 5 and exact["next_cursor"] is None  # no empty last page

    yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
    assert get(gateway_url, key, "/v1/generations", date=yesterday).json()["data"] == []
    for params, param in (
        ({"date": "2025-02-30"}, "date"),
        ({"date": "yesterday"}, "date"),
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": made[0], "date": yesterday}, "cursor"),
        ({"cursor": made[0] + "0" * 2000}, "cursor"),  # its own hex, but longer than any id: never to DynamoDB
    ):
        response = get(gateway_url, key, "/v1/generations", **params)
        assert response.status_code == 400, (params, response.text)
        validate_error(response.json())
        assert response.json()["error"]["param"] == param


# --- key information and credits (OpenRouter's shapes) ----------------------------------------


def test_key_and_credits_agree_with_the_statistics(gateway_url: str, make_key: MakeKey, marker: str) -> None:
    from gateway.accounts import account, plans

    expires = (datetime.now(UTC) + timedelta(days=30)).isoformat(timespec="seconds")
    key, record = make_key(name="info", free_requests=0, expires_at=expires)
    account.top_up(record.key_id, plans.effective(record.record), Decimal("2.5"))
    client = sdk(gateway_url, key)
    usages = [whole(client, "fake-ok", f"{marker} {i}").usage for i in range(2)]
    spent = sum((cost_of(u) for u in usages), Decimal(0))

    info = get(gateway_url, key, "/v1/key").json()["data"]
    assert info["label"] == record.prefix and key not in json.dumps(info)
    assert info["key_id"] == record.key_id and info["name"] == "info" and info["owner"] == record.owner
    assert info["status"] == "active" and info["created_at"] == record.created_at
    assert info["expires_at"] == expires
    assert info["rate_limit"] == {"requests": 100_000, "interval": "1m", "tokens": 100_000_000}
    assert usd(info["usage"]) == usd(info["usage_monthly"]) == usd(info["usage_daily"]) == spent
    assert usd(info["usage_weekly"]) == spent
    assert usd(info["limit_remaining"]) == Decimal("1002.5") - spent
    assert usd(info["limit"]) == Decimal("1002.5")  # this month's credit: the grant plus the top-up
    assert info["limit_reset"] == "monthly" and info["is_free_tier"] is False
    assert info["plan"]["id"] == "startup" and info["plan"]["free_requests"] == 0
    assert info["credit"]["purchased_remaining"] == 2.5
    for name in ("usage", "limit", "limit_remaining"):
        assert isinstance(info[name], int | float)  # JSON numbers, as OpenRouter sends them

    credits = get(gateway_url, key, "/v1/credits").json()["data"]
    assert usd(credits["total_usage"]) == spent
    assert usd(credits["total_credits"]) == Decimal("1002.5")
    assert usd(credits["balance"]) == Decimal("1002.5") - spent
    assert credits["purchased_remaining"] == 2.5 and credits["reserved"] == 0
    assert usd(credits["monthly_remaining"]) == Decimal(1000) - spent

    month = stats(gateway_url, key)["month"]
    assert usd(month["cost"]) == spent

    free, _ = make_key(name="free tier", plan="free", monthly_credit=None)
    assert get(gateway_url, free, "/v1/key").json()["data"]["is_free_tier"] is True
    assert get(gateway_url, None, "/v1/credits").status_code == 401


# --- expiry of what statistics keep -----------------------------------------------------------


def test_generation_records_and_daily_counters_expire(gateway_url: str, make_key: MakeKey, marker: str) -> None:
    from gateway.config import settings

    key, record = make_key(name="ttl")
    gid = whole(sdk(gateway_url, key), "gateway-echo", f"{marker} ttl").id
    tallied()
    dynamo = boto3.client("dynamodb", endpoint_url=os.environ["AWS_ENDPOINT_URL_DYNAMODB"])
    table = settings().usage_table
    now = time.time()

    def item(pk: str, sk: str) -> dict[str, Any]:
        found = dynamo.get_item(TableName=table, Key={"pk": {"S": pk}, "sk": {"S": sk}})
        assert "Item" in found, (pk, sk)
        return found["Item"]

    ttl = dynamo.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "expires_at" and ttl["TimeToLiveStatus"] == "ENABLED"
    generation = item(f"KEY#{record.key_id}", f"GEN#{gid}")
    assert 29.9 * 86400 < int(generation["expires_at"]["N"]) - now <= 30 * 86400
    day = item(f"KEY#{record.key_id}", f"DAY#{today()}")
    assert 399.9 * 86400 < int(day["expires_at"]["N"]) - now <= 400 * 86400
    month = item(f"KEY#{record.key_id}", f"MONTH#{today()[:7]}")
    assert "expires_at" not in month  # monthly counters are the key's history: they stay
    from gateway.stats.counters import SHARDS
    from gateway.storage.schema import stats_pk as shard_pk

    shards = dynamo.batch_get_item(
        RequestItems={
            table: {
                "Keys": [
                    {"pk": {"S": shard_pk("MODEL#gateway-echo", today(), n)}, "sk": {"S": "TOTAL"}}
                    for n in range(SHARDS)
                ]
            }
        }
    )["Responses"][table]
    assert shards and all(399.9 * 86400 < int(s["expires_at"]["N"]) - now <= 400 * 86400 for s in shards)


# --- the unified API ---------------------------------------------------------------------------------


def test_unified_models_route(gateway_url: str) -> None:
    from gateway.catalog import catalog

    fields = {
        "id",
        "platform",
        "model_id",
        "display_name",
        "intelligence_rank",
        "speed_rank",
        "size_label",
        "rpm_limit",
        "tpm_limit",
        "context_window",
        "enabled",
    }
    for path in ("/api/models", "/api/models.php"):
        response = get(gateway_url, None, path)  # public, like /v1/models
        assert response.status_code == 200 and response.headers["content-type"] == "application/json"
        rows = response.json()
        assert isinstance(rows, list) and len(rows) == len(catalog().models)
        assert all(fields <= set(row) for row in rows)
        by_name = {row["gateway_model"]: row for row in rows}
        assert by_name["gateway-echo"] == {
            "id": 1,
            "platform": "builtin",
            "model_id": "echo",
            "display_name": "Gateway Echo (offline)",
            "intelligence_rank": 99,
            "speed_rank": 1,
            "size_label": "Tiny",
            "rpm_limit": None,
            "tpm_limit": None,
            "context_window": 32768,
            "enabled": True,
            "gateway_model": "gateway-echo",
        }
        ok = by_name["fake-ok"]
        assert (ok["platform"], ok["model_id"], ok["enabled"], ok["context_window"]) == ("fake", "ok", True, 65536)
        assert by_name["fake-offline"]["enabled"] is False and by_name["fake-offline"]["platform"] == "fake-offline"
        oss = by_name["gpt-oss-120b"]  # no provider key here: its first offering, with its limits
        assert (oss["id"], oss["platform"], oss["enabled"]) == (18, "groq", False)
        assert (oss["rpm_limit"], oss["tpm_limit"]) == (30, 6000)
        assert isinstance(oss["context_window"], int)


def test_unified_stats_route(gateway_url: str, make_key: MakeKey, marker: str) -> None:
    key, _ = make_key(name="seed stats")
    client = sdk(gateway_url, key)
    usages = [whole(client, "gateway-echo", f"{marker} {i}").usage for i in range(2)]
    full = stats(gateway_url, key)
    for path in ("/api/stats", "/api/stats.php"):
        response = get(gateway_url, key, path)
        assert response.status_code == 200
        body = response.json()
        assert set(body) == FIVE
        assert body["requests_today"] == 2 and body["tokens_used"] == sum(u.total_tokens for u in usages)
        assert body["success_rate"] == 1.0 and isinstance(body["avg_latency"], int)
        assert body == {name: full[name] for name in FIVE}
        unauthenticated = get(gateway_url, None, path)
        assert unauthenticated.status_code == 401
        validate_unified_error(unauthenticated.json(), 401)


# --- logs and metrics -------------------------------------------------------------------------


@pytest.fixture
def gateway_log() -> Iterator[io.StringIO]:
    """The gateway's structured log lines, formatted as Powertools writes them to stdout."""
    logger = logging.getLogger("llm-gateway")
    sink = io.StringIO()
    handler = logging.StreamHandler(sink)
    handler.setFormatter(logger.handlers[0].formatter if logger.handlers else None)
    logger.addHandler(handler)
    try:
        yield sink
    finally:
        logger.removeHandler(handler)


def test_logs_hold_no_key_or_prompt_and_metrics_are_emitted(
    gateway_url: str,
    make_key: MakeKey,
    marker: str,
    gateway_log: io.StringIO,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)  # the local server sets it; Lambda does not
    monkeypatch.delenv("POWERTOOLS_DEV", raising=False)
    key, record = make_key(name="logs")
    client = sdk(gateway_url, key)
    secret = f"{marker} my password is hunter2"
    healthy("fake", "error-500")
    whole(client, "fake-ok", secret)
    streamed(client, "gateway-echo", secret)
    with pytest.raises(openai.APIStatusError):
        whole(client, "fake-error-500", secret)
    whole(client, "fake-ok", f"{marker} again")  # the fake provider is healthy again
    for path in ("/v1/stats", "/v1/key", "/v1/credits", "/v1/generations", "/api/stats"):
        assert get(gateway_url, key, path).status_code == 200

    lines = [json.loads(line) for line in gateway_log.getvalue().splitlines() if line.strip()]
    ours = [line for line in lines if line.get("key_id") == record.key_id]
    assert len(ours) == 4  # one line per chat request
    assert {line["status"] for line in ours} == {"ok", "error"}
    assert all(line["message"] == "chat completion" and line["generation_id"] for line in ours)
    written = gateway_log.getvalue() + capsys.readouterr().out
    assert key not in written and key[3:20] not in written
    assert marker not in written and "hunter2" not in written

    emf = [json.loads(line) for line in written.splitlines() if line.startswith('{"_aws"')]
    names = {m["Name"] for e in emf for d in e["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert {"Requests", "Errors", "PromptTokens", "CompletionTokens", "CostMicroUSD", "Latency"} <= names
    assert "TimeToFirstToken" in names
    by_model = [e for e in emf if e.get("model") == "fake-ok" and e.get("Requests") is not None]
    assert len(by_model) >= 2 and all(e["provider"] == "fake" for e in by_model)
    failed = [e for e in emf if e.get("model") == "fake-error-500"]
    assert failed and sum(sum(e["Errors"]) for e in failed) >= 1  # EMF values are lists of samples
