"""Statistics, key information, credits and generations: the StatsFunction's read API.

Every route reads a fixed number of DynamoDB items or pages, whatever the traffic (the call
counts are measured in tests/e2e/test_stats_calls.py):

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
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.responses import Response

from gateway.accounts import account, statement
from gateway.api.auth import Key
from gateway.api.replies import JSON
from gateway.catalog import catalog
from gateway.errors import GatewayError, invalid_request
from gateway.providers import registry
from gateway.routing import health
from gateway.stats import counters, days, generations, queries
from gateway.stats.present import (
    credit_fields,
    generation_view,
    margins,
    number,
    point,
    present,
    unified_fields,
)
from gateway.storage import dynamo, schema

DEFAULT_PAGE = 50
MAX_PAGE = 100
DAY_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}$")

router = APIRouter(tags=["statistics"])


# --- GET /v1/stats ----------------------------------------------------------------------------


async def _key_stats(key: Key) -> dict[str, Any]:
    day = days.today()
    read = await dynamo.call(statement.month, key=key, day=day)
    return {
        "object": "stats",
        "scope": "key",
        "key_id": key.key_id,
        "date": day.isoformat(),
        **unified_fields(read["today"], await health.active_providers()),
        "today": present(read["today"]),
        "month": {"month": day.isoformat()[:7], **present(read["month"])},
        "credit": credit_fields(account.credit_view(read["state"])),
        "plan": read["plan"].view(read["state"]),
        "daily": [point(d, totals) for d, totals in read["by_day"].items()],
    }


async def _gateway_stats() -> dict[str, Any]:
    day = days.today()
    month = days.month_days(day)
    cat = catalog()
    by_day = await dynamo.call(queries.shared_days, scope=schema.ALL_SCOPE, days=month)
    scopes = [schema.model_scope(m) for m in cat.models] + [schema.provider_scope(p) for p in cat.providers]
    shared = await dynamo.call(counters.read_shared_many, scopes=scopes, day=day.isoformat())
    active = await health.active_providers()
    today = by_day[day.isoformat()]
    served = health.upstream_models()
    providers = []
    for pid, provider in cat.providers.items():
        available = registry.configured(provider)
        providers.append(
            {
                "id": pid,
                "name": provider.name,
                "available": available,
                "ready": available and health.is_ready(provider, served[pid]),
                "cooling_models": health.cooling(provider, served[pid]) if available else [],
                **present(shared[schema.provider_scope(pid)]),
                **margins(shared[schema.provider_scope(pid)]),
            }
        )
    month_totals = queries.total(by_day.values())
    return {
        "object": "stats",
        "scope": "gateway",
        "date": day.isoformat(),
        **unified_fields(today, active),
        "today": {**present(today), **margins(today)},
        "month": {"month": day.isoformat()[:7], **present(month_totals), **margins(month_totals)},
        "daily": [point(d, by_day[d]) for d in month],
        "models": [
            {"id": mid, **present(shared[schema.model_scope(mid)]), **margins(shared[schema.model_scope(mid)])}
            for mid in cat.models
        ],
        "providers": providers,
    }


@router.get("/v1/stats", summary="Usage, credit and plan of the key (or, for an admin key, of the gateway)")
async def stats(
    key: Key, scope: Annotated[str | None, Query(description="`key` (the default) or `gateway`")] = None
) -> Response:
    scope = scope or "key"
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


@router.get("/stats", summary="The unified API's five figures of today, for the key")
@router.get("/stats.php", summary="The unified API's five figures, under their .php name")
async def unified_stats(key: Key) -> Response:
    today = await dynamo.call(queries.key_today, key_id=key.key_id, day=days.today())
    return JSON(unified_fields(today, await health.active_providers()))


# --- GET /v1/key and /v1/credits --------------------------------------------------------------


@router.get("/v1/key", summary="OpenRouter's key information, with the key's plan, limits and credit")
async def key_info(key: Key) -> Response:
    read = await dynamo.call(statement.usage, key=key, day=days.today(), week=True)
    plan, state = read["plan"], read["state"]
    credit = account.credit_view(state)
    remaining = credit["balance"]
    # This month's credit (the monthly grant, carried-over and bought credit): spent + held + left.
    limit = read["month"]["cost"] + credit["reserved"] + remaining
    return JSON(
        {
            "data": {
                "label": key.prefix,
                "usage": number(read["all_time"]["cost"]),
                "usage_daily": number(read["today"]["cost"]),
                "usage_weekly": number(read["week"]["cost"]),
                "usage_monthly": number(read["month"]["cost"]),
                "limit": number(limit),
                "limit_remaining": number(remaining),
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
                "plan": plan.view(state),
                "credit": credit_fields(credit, number),
            }
        }
    )


@router.get("/v1/credits", summary="OpenRouter's credits: everything ever credited and everything ever used")
async def credits(key: Key) -> Response:
    read = await dynamo.call(statement.usage, key=key, day=days.today(), week=False)
    credit = account.credit_view(read["state"])
    used = read["all_time"]["cost"]
    return JSON(
        {
            "data": {
                "total_credits": number(used + credit["balance"] + credit["reserved"]),
                "total_usage": number(used),
                "month_usage": number(read["month"]["cost"]),
                **credit_fields(credit, number),
            }
        }
    )


# --- GET /v1/generation and /v1/generations ---------------------------------------------------


@router.get("/v1/generation", summary="One request's record, readable only by the key that made it")
async def generation(key: Key, id: Annotated[str | None, Query(description="the generation id")] = None) -> Response:
    if not id:
        raise invalid_request("Missing required parameter: 'id'.", param="id")
    record = None
    if len(id) <= generations.MAX_ID_LENGTH:  # records live in the key's own partition: another key's is not found
        record = await dynamo.call(generations.get, key_id=key.key_id, generation_id=id)
    if record is None:
        raise GatewayError(404, f"No generation with id '{id}' for this key.", param="id", code="not_found")
    return JSON({"data": generation_view(record)})


def _page(raw_date: str | None, raw_limit: str | None, cursor: str | None) -> tuple[date, int, str | None]:
    """The listing's day, page size and cursor, each checked with its own message (not pydantic's)."""
    if raw_date:
        try:
            if not DAY_PATTERN.match(raw_date):
                raise ValueError(raw_date)
            day = date.fromisoformat(raw_date)
        except ValueError:
            raise invalid_request("'date' must be a UTC day as YYYY-MM-DD.", param="date") from None
    else:
        day = days.today()
    try:
        limit = int(raw_limit) if raw_limit is not None else DEFAULT_PAGE
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_PAGE:
        raise invalid_request(f"'limit' must be an integer from 1 to {MAX_PAGE}.", param="limit")
    if cursor:
        start = days.day_start(day)
        if not generations.made_between(cursor, start, start + 86400):
            raise invalid_request("'cursor' is not a next_cursor of this date's listing.", param="cursor")
    return day, limit, cursor or None


@router.get("/v1/generations", summary="The key's requests of one UTC day, newest first, paginated")
async def list_generations(
    key: Key,
    day: Annotated[str | None, Query(alias="date", description="YYYY-MM-DD, UTC; today by default")] = None,
    limit: Annotated[str | None, Query(description=f"1 to {MAX_PAGE}; {DEFAULT_PAGE} by default")] = None,
    cursor: Annotated[str | None, Query(description="the previous page's next_cursor")] = None,
) -> Response:
    listed, size, after = _page(day, limit, cursor)
    start = days.day_start(listed)
    # One more than asked: a next_cursor only when another record really follows.
    items, _ = await dynamo.call(
        generations.page, key_id=key.key_id, start=start, end=start + 86399.9995, limit=size + 1, cursor=after
    )
    next_cursor = items[size - 1]["id"] if len(items) > size else None
    return JSON(
        {
            "object": "list",
            "date": listed.isoformat(),
            "data": [generation_view(r) for r in items[:size]],
            "next_cursor": next_cursor,
            "has_more": next_cursor is not None,
        }
    )
