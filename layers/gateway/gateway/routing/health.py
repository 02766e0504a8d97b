"""Provider health and limits that every instance shares: one DynamoDB item per provider.

The item (`PROVIDER#<id>` / `STATE` in the usage table) holds its own request and token
windows (per minute and per day) and, per upstream model it serves, a failure count and a
cooldown (`fail:<model>`, `cool:<model>`): one overloaded model does not take the provider's
other models out with it. Instances read it through a
short cache (a BatchGetItem at most every CACHE_SECONDS for the providers a request may
use), write failures to it, and claim capacity from it with a conditional write before
calling a provider that has limits, so the providers' free-tier limits hold across every
Lambda instance rather than per instance.

Only providers with limits are counted, so the item takes one write per request that uses
that provider: a provider's own limits (tens or hundreds of requests a minute) keep that
far below DynamoDB's 1,000 writes a second per item.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Any

from botocore.exceptions import ClientError

from gateway import caches
from gateway.accounts.account import conditional_failed, day_of, window_of
from gateway.catalog import Provider, catalog
from gateway.config import settings
from gateway.providers import registry
from gateway.storage import dynamo, schema
from gateway.storage.singleflight import SingleFlight

CACHE_SECONDS = 2.0
MAX_COOLDOWN_SECONDS = 300.0

_states: dict[str, tuple[float, dict[str, Any]]] = {}  # provider id -> (fetched at, item)
_full_until: dict[str, float] = {}  # provider id -> when its exhausted window ends
caches.register(_states.clear, f"{__name__}._states")
caches.register(_full_until.clear, f"{__name__}._full_until")
_flights = SingleFlight()


def forget(*provider_ids: str) -> None:
    """Forget what this process remembers of these providers' health (of every provider, given none).

    The next check reads the shared item afresh; what is stored in DynamoDB stays as it is.
    """
    if not provider_ids:
        _states.clear()
        _full_until.clear()
    for provider_id in provider_ids:
        _states.pop(provider_id, None)
        _full_until.pop(provider_id, None)


def _remember(provider_id: str, item: dict[str, Any]) -> None:
    _states[provider_id] = (time.monotonic(), item)


def state(provider_id: str) -> dict[str, Any]:
    return _states.get(provider_id, (0.0, {}))[1]


def refresh_sync(providers: Iterable[Provider]) -> None:
    """Re-read the state of the given providers whose cached copy is older than CACHE_SECONDS."""
    now = time.monotonic()
    stale = sorted({p.id for p in providers if now - _states.get(p.id, (-1e9, {}))[0] > CACHE_SECONDS})
    for start in range(0, len(stale), 100):
        batch = stale[start : start + 100]
        table = settings().usage_table
        keys = [schema.provider_key(p) for p in batch]
        response = dynamo.client().batch_get_item(RequestItems={table: {"Keys": keys}})
        items = [dynamo.from_item(i) for i in response["Responses"].get(table, [])]
        found = {schema.provider_id_of(i["pk"]): i for i in items}
        for pid in batch:
            _remember(pid, found.get(pid, {}))


async def refresh(providers: Iterable[Provider]) -> None:
    providers = list(providers)
    now = time.monotonic()
    if any(now - _states.get(p.id, (-1e9, {}))[0] > CACHE_SECONDS for p in providers):
        ids = tuple(sorted(p.id for p in providers))
        await _flights.do(ids, lambda: dynamo.call(refresh_sync, providers=providers))


def _cooling_until(provider: Provider, model: str) -> float:
    return float(state(provider.id).get(f"cool:{model}", 0))


def ready(provider: Provider, model: str) -> bool:
    """Callable now: the model is not cooling down and the provider is not at a limit known to be exhausted."""
    now = time.time()
    return _cooling_until(provider, model) <= now and _full_until.get(provider.id, 0) <= now


def retry_after(deployments: Iterable[tuple[Provider, str]]) -> int:
    """Seconds until the first of these (provider, upstream model) pairs can be tried again."""
    now = time.time()
    waits = [max(_cooling_until(p, m), _full_until.get(p.id, 0)) - now for p, m in deployments]
    positive = [w for w in waits if w > 0]
    return max(math.ceil(min(positive)), 1) if positive else 30


def record_failure_sync(provider: Provider, model: str, retry_after_seconds: float | None) -> None:
    """Count a failure; at the provider's threshold (or on a 429 that says how long), cool it for everyone."""
    now = time.time()
    names = {"#f": f"fail:{model}", "#c": f"cool:{model}"}
    response = dynamo.client().update_item(
        TableName=settings().usage_table,
        Key=schema.provider_key(provider.id),
        UpdateExpression="ADD #f :one SET last_failure = :now",
        ExpressionAttributeNames={"#f": names["#f"]},
        ExpressionAttributeValues=dynamo.to_item({":one": 1, ":now": int(now)}),
        ReturnValues="ALL_NEW",
    )
    item = dynamo.from_item(response["Attributes"])
    failures = int(item[names["#f"]])
    cooldown = None
    if retry_after_seconds:
        cooldown = min(retry_after_seconds, MAX_COOLDOWN_SECONDS)
    elif failures >= provider.cooldown_after:
        cooldown = min(provider.cooldown_seconds * 2 ** (failures - provider.cooldown_after), MAX_COOLDOWN_SECONDS)
    if cooldown:
        until = math.ceil(now + cooldown)
        try:  # never shorten a cooldown another instance set
            dynamo.client().update_item(
                TableName=settings().usage_table,
                Key=schema.provider_key(provider.id),
                UpdateExpression="SET #c = :until",
                ConditionExpression="attribute_not_exists(#c) OR #c < :until",
                ExpressionAttributeNames={"#c": names["#c"]},
                ExpressionAttributeValues=dynamo.to_item({":until": until}),
            )
        except ClientError as exc:
            if not conditional_failed(exc):
                raise
        item[names["#c"]] = max(until, int(item.get(names["#c"], 0)))
    _remember(provider.id, item)


def record_success_sync(provider: Provider, model: str) -> None:
    """A model that answers is healthy again: its failure count starts over (written only if it was not 0)."""
    if int(state(provider.id).get(f"fail:{model}", 0)) == 0:
        return
    dynamo.client().update_item(
        TableName=settings().usage_table,
        Key=schema.provider_key(provider.id),
        UpdateExpression="SET #f = :zero",
        ExpressionAttributeNames={"#f": f"fail:{model}"},
        ExpressionAttributeValues={":zero": {"N": "0"}},
    )
    _remember(provider.id, {**state(provider.id), f"fail:{model}": 0})


# A provider's two windows: (attribute holding the window, its request and token counters, limits).
WINDOWS = (("win", "req_n", "tok_n", "rpm", "tpm"), ("#day", "day_req", "day_tok", "rpd", "tpd"))


def _claim_expression(provider: Provider, tokens: int, guess: dict[str, Any], now: float) -> dict[str, Any]:
    current = {"win": window_of(now), "#day": day_of(now)}
    sets: list[str] = []
    conditions: list[str] = []
    values: dict[str, Any] = {":one": 1, ":tok": tokens}
    for window, requests, spent, request_limit, token_limit in WINDOWS:
        at = f":{window.strip('#')}"
        values[at] = current[window]
        if guess.get(window.strip("#")) == current[window]:  # the same window: count on, within the limits
            sets += [f"{requests} = {requests} + :one", f"{spent} = {spent} + :tok"]
            conditions.append(f"{window} = {at}")
            if request_limit in provider.limits:
                conditions.append(f"{requests} < :{request_limit}")
                values[f":{request_limit}"] = provider.limits[request_limit]
            if token_limit in provider.limits:
                conditions.append(f"{spent} <= :{token_limit}_room")
                values[f":{token_limit}_room"] = provider.limits[token_limit] - tokens
        else:  # a new window (or none yet): start counting
            sets += [f"{window} = {at}", f"{requests} = :one", f"{spent} = :tok"]
            conditions.append(f"(attribute_not_exists({window}) OR {window} < {at})")
    return {
        "TableName": settings().usage_table,
        "Key": schema.provider_key(provider.id),
        "UpdateExpression": "SET " + ", ".join(sets),
        "ConditionExpression": " AND ".join(conditions),
        "ExpressionAttributeNames": {"#day": "day"},
        "ExpressionAttributeValues": dynamo.to_item(values),
    }


def _exhausted(provider: Provider, old: dict[str, Any], tokens: int, now: float) -> float | None:
    """When the window that refused this claim ends, or None if the refusal was only a stale guess."""
    limits = provider.limits
    minute, day = window_of(now), day_of(now)
    if old.get("day") == day and (
        int(old.get("day_req", 0)) >= limits.get("rpd", math.inf)
        or int(old.get("day_tok", 0)) + tokens > limits.get("tpd", math.inf)
    ):
        return (now // 86400 + 1) * 86400
    if old.get("win") == minute and (
        int(old.get("req_n", 0)) >= limits.get("rpm", math.inf)
        or int(old.get("tok_n", 0)) + tokens > limits.get("tpm", math.inf)
    ):
        return (minute + 1) * 60
    return None


def claimed(provider: Provider, tokens: int) -> int:
    """What a request counts in the provider's token windows: its bound, or a whole window if it is larger.

    The bound counts bytes, several times a text's tokens: a request bounded above a window may
    still fit the provider, so it may go alone in a fresh window rather than never.
    """
    return min([tokens, *(provider.limits[k] for k in ("tpm", "tpd") if k in provider.limits)])


def correct_sync(provider: Provider, used: int, bound: int, claimed_at: float) -> None:
    """Make the provider's token windows hold the tokens used instead of the bound claimed, while they last."""
    delta = used - claimed(provider, bound)
    if not delta or not any(k in provider.limits for k in ("tpm", "tpd")):
        return
    minute, day = window_of(claimed_at), day_of(claimed_at)
    both = ("tok_n = tok_n + :d, day_tok = day_tok + :d", "win = :w AND #day = :day", {":w": minute})
    for sets, condition, more in (both, ("day_tok = day_tok + :d", "#day = :day", {})):
        try:
            dynamo.client().update_item(
                TableName=settings().usage_table,
                Key=schema.provider_key(provider.id),
                UpdateExpression="SET " + sets,
                ConditionExpression=condition,
                ExpressionAttributeNames={"#day": "day"},
                ExpressionAttributeValues=dynamo.to_item({":d": delta, ":day": day, **more}),
            )
            return
        except ClientError as exc:
            if not conditional_failed(exc):
                raise


def claim_sync(provider: Provider, tokens: int) -> bool:
    """Take one request and `tokens` from the provider's own limits; False if it has none left now."""
    if not provider.limits:
        return True
    now = time.time()
    tokens = claimed(provider, tokens)
    guess = state(provider.id)
    for _ in range(4):
        try:
            response = dynamo.client().update_item(
                **_claim_expression(provider, tokens, guess, now),
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if not conditional_failed(exc):
                raise
            guess = dynamo.from_item(exc.response.get("Item") or {})
            until = _exhausted(provider, guess, tokens, now)
            if until is not None:
                _full_until[provider.id] = until
                _remember(provider.id, guess)
                return False
            continue
        _remember(provider.id, dynamo.from_item(response["Attributes"]))
        return True
    return False


async def claim(provider: Provider, tokens: int) -> bool:
    if not provider.limits:
        return True
    return await dynamo.call(claim_sync, provider=provider, tokens=tokens)


async def correct(provider: Provider, used: int, bound: int, claimed_at: float) -> None:
    if any(k in provider.limits for k in ("tpm", "tpd")):
        await dynamo.call(correct_sync, provider=provider, used=used, bound=bound, claimed_at=claimed_at)


async def record_failure(provider: Provider, model: str, retry_after_seconds: float | None) -> None:
    await dynamo.call(record_failure_sync, provider=provider, model=model, retry_after_seconds=retry_after_seconds)


async def record_success(provider: Provider, model: str) -> None:
    if int(state(provider.id).get(f"fail:{model}", 0)):
        await dynamo.call(record_success_sync, provider=provider, model=model)


# --- readiness, as the statistics report it ----------------------------------------------------


def upstream_models() -> dict[str, list[str]]:
    """Provider id -> the upstream models the catalog sends to it."""
    served: dict[str, list[str]] = {pid: [] for pid in catalog().providers}
    for model in catalog().models.values():
        for offering in model.offerings:
            if offering.upstream_model not in served[offering.provider]:
                served[offering.provider].append(offering.upstream_model)
    return served


def cooling(provider: Provider, served: list[str]) -> list[str]:
    """The provider's upstream models that are cooling down (or all of them, at a limit known to be exhausted)."""
    return [m for m in served if not ready(provider, m)]


def is_ready(provider: Provider, served: list[str]) -> bool:
    """Callable now for at least one of its models (cooldowns are per model; exhausted limits per provider)."""
    return len(cooling(provider, served)) < len(served) if served else ready(provider, "")


async def active_providers() -> int:
    """Providers configured here and callable now: not cooling down, not at a limit known to be exhausted."""
    available = [p for p in catalog().providers.values() if registry.configured(p)]
    await refresh(available)
    served = upstream_models()
    return sum(1 for p in available if is_ready(p, served[p.id]))
