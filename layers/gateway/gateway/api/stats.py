"""Statistics, key information, credits and generations: the StatsFunction's read API.

Every route reads a fixed number of DynamoDB items or pages, whatever the traffic (the call
counts are measured in tests/test_stats_calls.py):

    GET /v1/stats                   account GetItem + one Query of the month's days (+ provider health)
    GET /v1/stats?scope=gateway     (admin keys) BatchGetItems of the month's gateway shards (at most 10)
                                    + BatchGetItems of today's shards of every catalog model and provider
                                    (one per 100 shard items) (+ provider health)
    GET /v1/key                     account GetItem + Query of the key's months + Query of this week's days
    GET /v1/credits                 account GetItem + Query of the key's months
    GET /v1/generation?id=          one GetItem in the key's own partition
    GET /v1/generations             one Query of one day's records in the key's own partition
    GET /api/stats, /api/stats.php  one GetItem of today's counter (+ provider health)

Provider health is at most one BatchGetItem per 100 configured providers, and none when this
instance read it in the last two seconds. Money is a decimal string, never a float.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.accounts import account, keys, plans
from gateway.api.auth import require_key
from gateway.api.responses import JSON
from gateway.errors import GatewayError, invalid_request
from gateway.providers import registry
from gateway.routing import health
from gateway.routing.catalog import Provider, catalog
from gateway.stats import counters, generations, views
from gateway.storage import dynamo, schema

DEFAULT_PAGE = 50
MAX_PAGE = 100
DAY_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}$")
GENERATION_ID = re.compile(rf"^{re.escape(generations.PREFIX)}[0-9a-f]{{11,}}$")
MAX_ID_LENGTH = 200  # a sort key may hold 1 KB; nothing longer is ever a generation id


# --- shared pieces ----------------------------------------------------------------------------


def _upstream_models() -> dict[str, list[str]]:
    """Provider id -> the upstream models the catalog sends to it."""
    served: dict[str, list[str]] = {pid: [] for pid in catalog().providers}
    for model in catalog().models.values():
        for offering in model.offerings:
            if offering.upstream_model not in served[offering.provider]:
                served[offering.provider].append(offering.upstream_model)
    return served


def cooling(provider: Provider, served: list[str]) -> list[str]:
    """The provider's upstream models that are cooling down (or all of them, at a limit known to be exhausted)."""
    return [m for m in served if not health.ready(provider, m)]


def is_ready(provider: Provider, served: list[str]) -> bool:
    """Callable now for at least one of its models (cooldowns are per model; exhausted limits per provider)."""
    return len(cooling(provider, served)) < len(served) if served else health.ready(provider, "")


async def active_providers() -> int:
    """Providers configured here and callable now: not cooling down, not at a limit known to be exhausted."""
    available = [p for p in catalog().providers.values() if registry.configured(p)]
    await health.refresh(available)
    served = _upstream_models()
    return sum(1 for p in available if is_ready(p, served[p.id]))


def seed_fields(today: dict[str, Any], active: int) -> dict[str, Any]:
    """Seed 002's five statistics, for today (UTC)."""
    s = counters.summary(today)
    return {
        "requests_today": s["requests"],
        "tokens_used": s["total_tokens"],
        "avg_latency": s["avg_latency_ms"],
        "success_rate": s["success_rate"],
        "active_providers": active,
    }


def plan_view(plan: plans.Plan, state: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": plan.id,
        "name": plan.name,
        "monthly_credit": views.money(plan.monthly_credit),
        "free_requests": plan.free_requests,
        "free_requests_used": int(state.get("free_used", 0)),
        "rpm": plan.rpm,
        "tpm": plan.tpm,
        "allowed_models": list(plan.allowed_models) if plan.allowed_models is not None else None,
    }


def credit_fields(state: dict[str, Any], render: Callable[[Any], Any] = views.money) -> dict[str, Any]:
    credit = account.credit_view(state)
    return {
        "balance": render(credit["balance"]),
        "monthly_remaining": render(credit["monthly"]),
        "purchased_remaining": render(credit["purchased"]),
        "reserved": render(credit["reserved"]),
        "debt": render(credit["debt"]),
    }


def _read_account(key: keys.ApiKey) -> tuple[plans.Plan, dict[str, Any]]:
    plan = plans.effective(key.record)
    return plan, account.read(key.key_id, plan)


# --- GET /v1/stats ----------------------------------------------------------------------------


def _key_stats_sync(key: keys.ApiKey, day: date) -> dict[str, Any]:
    plan, state = _read_account(key)
    first, last = views.month_bounds(day)
    by_day = views.key_days(key.key_id, first, last)
    days = views.month_days(day)
    return {
        "plan": plan,
        "state": state,
        "today": by_day.get(day.isoformat(), views.empty()),
        "month": views.total(by_day.values()),
        "daily": [views.point(d, by_day.get(d, views.empty())) for d in days],
    }


async def _key_stats(key: keys.ApiKey) -> dict[str, Any]:
    day = views.today()
    read = await dynamo.call(_key_stats_sync, key=key, day=day)
    active = await active_providers()
    return {
        "object": "stats",
        "scope": "key",
        "key_id": key.key_id,
        "date": day.isoformat(),
        **seed_fields(read["today"], active),
        "today": views.present(read["today"]),
        "month": {"month": day.isoformat()[:7], **views.present(read["month"])},
        "credit": credit_fields(read["state"]),
        "plan": plan_view(read["plan"], read["state"]),
        "daily": read["daily"],
    }


async def _gateway_stats() -> dict[str, Any]:
    day = views.today()
    days = views.month_days(day)
    cat = catalog()
    by_day = await dynamo.call(views.shared_days, scope=schema.ALL_SCOPE, days=days)
    scopes = [schema.model_scope(m) for m in cat.models] + [schema.provider_scope(p) for p in cat.providers]
    shared = await dynamo.call(counters.read_shared_many, scopes=scopes, day=day.isoformat())
    active = await active_providers()
    today = by_day[day.isoformat()]
    served = _upstream_models()
    providers = []
    for pid, provider in cat.providers.items():
        available = registry.configured(provider)
        providers.append(
            {
                "id": pid,
                "name": provider.name,
                "available": available,
                "ready": available and is_ready(provider, served[pid]),
                "cooling_models": cooling(provider, served[pid]) if available else [],
                **views.present(shared[schema.provider_scope(pid)]),
            }
        )
    return {
        "object": "stats",
        "scope": "gateway",
        "date": day.isoformat(),
        **seed_fields(today, active),
        "today": views.present(today),
        "month": {"month": day.isoformat()[:7], **views.present(views.total(by_day.values()))},
        "daily": [views.point(d, by_day[d]) for d in days],
        "models": [{"id": mid, **views.present(shared[schema.model_scope(mid)])} for mid in cat.models],
        "providers": providers,
    }


async def stats(request: Request) -> Response:
    key = await require_key(request)
    scope = request.query_params.get("scope") or "key"
    if scope == "key":
        return JSON(await _key_stats(key))
    if scope != "gateway":
        raise invalid_request("'scope' must be 'key' or 'gateway'.", param="scope")
    if not key.admin:
        raise GatewayError(
            403,
            "Gateway-wide statistics need an admin key.",
            type="permission_error",
            param="scope",
            code="permission_denied",
        )
    return JSON(await _gateway_stats())


async def seed_stats(request: Request) -> Response:
    """Seed 002's GET /api/stats(.php): today's five figures for the caller's key."""
    key = await require_key(request)
    today = await dynamo.call(views.key_today, key_id=key.key_id, day=views.today())
    return JSON(seed_fields(today, await active_providers()))


# --- GET /v1/key and /v1/credits --------------------------------------------------------------


def _usage_sync(key: keys.ApiKey, week: bool) -> dict[str, Any]:
    plan, state = _read_account(key)
    day = views.today()
    months = views.key_months(key.key_id)
    read: dict[str, Any] = {
        "plan": plan,
        "state": state,
        "all_time": views.total(months.values()),
        "month": months.get(day.isoformat()[:7], views.empty()),
    }
    if week:
        days = views.key_days(key.key_id, views.week_start(day).isoformat(), day.isoformat())
        read["week"] = views.total(days.values())
        read["today"] = days.get(day.isoformat(), views.empty())
    return read


async def key_info(request: Request) -> Response:
    """OpenRouter's GET /api/v1/key, with the key's plan, limits and our own fields."""
    key = await require_key(request)
    read = await dynamo.call(_usage_sync, key=key, week=True)
    plan: plans.Plan = read["plan"]
    state = read["state"]
    credit = account.credit_view(state)
    remaining = credit["balance"]
    # This month's credit (the monthly grant, carried-over and bought credit): spent + held + left.
    limit = read["month"]["cost"] + credit["reserved"] + remaining
    return JSON(
        {
            "data": {
                "label": key.prefix,
                "usage": views.number(read["all_time"]["cost"]),
                "usage_daily": views.number(read["today"]["cost"]),
                "usage_weekly": views.number(read["week"]["cost"]),
                "usage_monthly": views.number(read["month"]["cost"]),
                "limit": views.number(limit),
                "limit_remaining": views.number(remaining),
                "limit_reset": "monthly",
                "is_free_tier": plan.monthly_credit == 0 and credit["purchased"] == 0,
                "is_provisioning_key": False,
                "rate_limit": {"requests": plan.rpm, "interval": "1m", "tokens": plan.tpm},
                "key_id": key.key_id,
                "name": key.name,
                "owner": key.owner,
                "status": key.status,
                "created_at": key.created_at,
                "expires_at": key.record.get("expires_at"),
                "plan": plan_view(plan, state),
                "credit": credit_fields(state, views.number),
            }
        }
    )


async def credits(request: Request) -> Response:
    """OpenRouter's GET /api/v1/credits: everything ever credited and everything ever used."""
    key = await require_key(request)
    read = await dynamo.call(_usage_sync, key=key, week=False)
    credit = account.credit_view(read["state"])
    used = read["all_time"]["cost"]
    return JSON(
        {
            "data": {
                "total_credits": views.number(used + credit["balance"] + credit["reserved"]),
                "total_usage": views.number(used),
                "month_usage": views.number(read["month"]["cost"]),
                **credit_fields(read["state"], views.number),
            }
        }
    )


# --- GET /v1/generation and /v1/generations ---------------------------------------------------


def _int(value: Any) -> int | None:
    return int(value) if value is not None else None


def _iso(ts: Any) -> str | None:
    return datetime.fromtimestamp(int(ts), UTC).isoformat(timespec="seconds") if ts is not None else None


def generation_view(record: dict[str, Any]) -> dict[str, Any]:
    """A generation record under OpenRouter's names, with ours alongside."""
    providers = catalog().providers
    pid = record.get("provider")
    prompt = _int(record.get("prompt_tokens")) or 0
    completion = _int(record.get("completion_tokens")) or 0
    latency = _int(record.get("latency_ms"))
    ttft = _int(record.get("ttft_ms"))
    cost = views.number(record.get("cost", 0))
    return {
        "id": record["id"],
        "model": record.get("model"),
        "provider": pid,
        "provider_name": providers[pid].name if pid in providers else pid,
        "upstream_model": record.get("upstream_model"),
        "total_cost": cost,
        "usage": cost,
        "cost": cost,
        "tokens_prompt": prompt,
        "tokens_completion": completion,
        "native_tokens_prompt": prompt,
        "native_tokens_completion": completion,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "usage_reported": bool(record.get("usage_reported")),
        "latency": latency,
        "latency_ms": latency,
        "ttft_ms": ttft,
        "generation_time": latency - ttft if latency is not None and ttft is not None else latency,
        "finish_reason": record.get("finish_reason"),
        "native_finish_reason": record.get("finish_reason"),
        "streamed": bool(record.get("streamed")),
        "cancelled": record.get("status") == "cancelled",
        "status": record.get("status"),
        "http_status": _int(record.get("http_status")),
        "error": record.get("error"),
        "request_id": record.get("request_id"),
        "created": _int(record.get("created")),
        "created_at": _iso(record.get("created")),
        "expires_at": _iso(record.get("expires_at")),
    }


async def generation(request: Request) -> Response:
    """OpenRouter's GET /api/v1/generation?id=: one record, readable only by the key that made it."""
    key = await require_key(request)
    gid = request.query_params.get("id")
    if not gid:
        raise invalid_request("Missing required parameter: 'id'.", param="id")
    record = None
    if len(gid) <= MAX_ID_LENGTH:  # records live in the key's own partition: another key's id is not found
        record = await dynamo.call(generations.get, key_id=key.key_id, generation_id=gid)
    if record is None:
        raise GatewayError(404, f"No generation with id '{gid}' for this key.", param="id", code="not_found")
    return JSON({"data": generation_view(record)})


def _page_params(request: Request) -> tuple[date, int, str | None]:
    raw_date = request.query_params.get("date")
    if raw_date:
        try:
            if not DAY_PATTERN.match(raw_date):
                raise ValueError(raw_date)
            day = date.fromisoformat(raw_date)
        except ValueError:
            raise invalid_request("'date' must be a UTC day as YYYY-MM-DD.", param="date") from None
    else:
        day = views.today()
    raw_limit = request.query_params.get("limit")
    try:
        limit = int(raw_limit) if raw_limit is not None else DEFAULT_PAGE
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_PAGE:
        raise invalid_request(f"'limit' must be an integer from 1 to {MAX_PAGE}.", param="limit")
    cursor = request.query_params.get("cursor") or None
    if cursor is not None:
        start = views.day_start(day)
        inside = (
            GENERATION_ID.match(cursor)
            and start * 1000 <= int(cursor[len(generations.PREFIX) :][:11], 16) < (start + 86400) * 1000
        )
        if not inside:
            raise invalid_request("'cursor' is not a next_cursor of this date's listing.", param="cursor")
    return day, limit, cursor


async def list_generations(request: Request) -> Response:
    """The key's generations of one UTC day, newest first, `limit` at a time."""
    key = await require_key(request)
    day, limit, cursor = _page_params(request)
    start = views.day_start(day)
    # One more than asked: a next_cursor only when another record really follows.
    items, _ = await dynamo.call(
        generations.page, key_id=key.key_id, start=start, end=start + 86399.9995, limit=limit + 1, cursor=cursor
    )
    next_cursor = items[limit - 1]["id"] if len(items) > limit else None
    return JSON(
        {
            "object": "list",
            "date": day.isoformat(),
            "data": [generation_view(r) for r in items[:limit]],
            "next_cursor": next_cursor,
            "has_more": next_cursor is not None,
        }
    )


routes = [
    Route("/v1/stats", stats, methods=["GET"]),
    Route("/v1/key", key_info, methods=["GET"]),
    Route("/v1/credits", credits, methods=["GET"]),
    Route("/v1/generation", generation, methods=["GET"]),
    Route("/v1/generations", list_generations, methods=["GET"]),
    Route("/api/stats", seed_stats, methods=["GET"]),
    Route("/api/stats.php", seed_stats, methods=["GET"]),
]
