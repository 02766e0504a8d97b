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

from gateway import caches
from gateway.accounts.account import day_of, window_of
from gateway.catalog import Provider, catalog
from gateway.config import settings
from gateway.providers import registry
from gateway.storage import dynamo, schema, writes
from gateway.storage.dynamo import Op
from gateway.storage.dynamo import Plan as Steps
from gateway.storage.singleflight import SingleFlight
from gateway.storage.writes import Done

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


def _refresh_plan(providers: list[Provider]) -> Steps[None]:
    """Re-read the state of the given providers whose cached copy is older than CACHE_SECONDS."""
    now = time.monotonic()
    stale = sorted({p.id for p in providers if now - _states.get(p.id, (-1e9, {}))[0] > CACHE_SECONDS})
    table = settings().usage_table
    for start in range(0, len(stale), 100):
        batch = stale[start : start + 100]
        pending: dict[str, Any] = {table: {"Keys": [schema.provider_key(p) for p in batch]}}
        found: dict[str, dict[str, Any]] = {}
        while pending:
            answer = yield Op("BatchGetItem", {"RequestItems": pending})
            for raw in answer.get("Responses", {}).get(table, []):
                item = dynamo.from_item(raw)
                found[schema.provider_id_of(item["pk"])] = item
            pending = answer.get("UnprocessedKeys") or {}
        for pid in batch:
            _remember(pid, found.get(pid, {}))


async def refresh(providers: Iterable[Provider]) -> None:
    providers = list(providers)
    now = time.monotonic()
    if any(now - _states.get(p.id, (-1e9, {}))[0] > CACHE_SECONDS for p in providers):
        ids = tuple(sorted(p.id for p in providers))
        await _flights.do(ids, lambda: dynamo.run(_refresh_plan(providers)))


def refresh_sync(providers: Iterable[Provider]) -> None:
    dynamo.run_sync(_refresh_plan(list(providers)))


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


def _update(
    provider_id: str,
    sets: str,
    names: dict[str, str],
    values: dict[str, Any],
    condition: str | None = None,
    **more: Any,
) -> Op:
    return writes.update(schema.provider_key(provider_id), sets, condition, names, values, **more)


def _failure_plan(provider: Provider, model: str, retry_after_seconds: float | None) -> Steps[None]:
    """Count a failure; at the provider's threshold (or on a 429 that says how long), cool it for everyone."""
    now = writes.now()
    failed, cool = f"fail:{model}", f"cool:{model}"
    answer = yield _update(
        provider.id,
        "ADD #f :one SET last_failure = :now",
        {"#f": failed},
        {":one": 1, ":now": int(now)},
        ReturnValues="ALL_NEW",
    )
    item = dynamo.from_item(answer["Attributes"])
    failures = int(item[failed])
    cooldown = None
    if retry_after_seconds:
        cooldown = min(retry_after_seconds, MAX_COOLDOWN_SECONDS)
    elif failures >= provider.cooldown_after:
        cooldown = min(provider.cooldown_seconds * 2 ** (failures - provider.cooldown_after), MAX_COOLDOWN_SECONDS)
    if cooldown:
        until = math.ceil(now + cooldown)
        never_shorter = "attribute_not_exists(#c) OR #c < :until"  # than a cooldown another instance set
        yield from writes.unless_refused(
            _update(provider.id, "SET #c = :until", {"#c": cool}, {":until": until}, never_shorter)
        )
        item[cool] = max(until, int(item.get(cool, 0)))
    _remember(provider.id, item)


def _success_plan(provider: Provider, model: str) -> Steps[None]:
    """A model that answers is healthy again: its failure count starts over (written only if it was not 0)."""
    if int(state(provider.id).get(f"fail:{model}", 0)) == 0:
        return
    yield _update(provider.id, "SET #f = :zero", {"#f": f"fail:{model}"}, {":zero": 0})
    _remember(provider.id, {**state(provider.id), f"fail:{model}": 0})


# A provider's two windows: (attribute holding the window, its request and token counters, limits).
WINDOWS = (("win", "req_n", "tok_n", "rpm", "tpm"), ("#day", "day_req", "day_tok", "rpd", "tpd"))


def _claim_expression(provider: Provider, tokens: int, guess: dict[str, Any], now: float) -> Op:
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
    return _update(
        provider.id,
        "SET " + ", ".join(sets),
        {"#day": "day"},
        values,
        " AND ".join(conditions),
        ReturnValues="ALL_NEW",
        ReturnValuesOnConditionCheckFailure="ALL_OLD",
    )


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


def _correct_plan(provider: Provider, used: int, bound: int, claimed_at: float) -> Steps[None]:
    """Make the provider's token windows hold the tokens used instead of the bound claimed, while they last."""
    delta = used - claimed(provider, bound)
    if not delta or not any(k in provider.limits for k in ("tpm", "tpd")):
        return
    minute, day = window_of(claimed_at), day_of(claimed_at)
    both = ("tok_n = tok_n + :d, day_tok = day_tok + :d", "win = :w AND #day = :day", {":w": minute})
    for sets, condition, more in (both, ("day_tok = day_tok + :d", "#day = :day", {})):
        values = {":d": delta, ":day": day, **more}
        if (yield from writes.unless_refused(_update(provider.id, "SET " + sets, {"#day": "day"}, values, condition))):
            return


def _claim_plan(provider: Provider, tokens: int) -> Steps[bool]:
    """Take one request and `tokens` from the provider's own limits; False if it has none left now."""
    if not provider.limits:
        return True
    now = writes.now()
    tokens = claimed(provider, tokens)
    guess = state(provider.id)

    def learn(old: dict[str, Any] | None) -> Done[bool] | None:
        nonlocal guess
        guess = old or {}
        until = _exhausted(provider, guess, tokens, now)
        if until is None:
            return None
        _full_until[provider.id] = until
        _remember(provider.id, guess)
        return Done(False)

    def landed(answer: dict[str, Any]) -> bool:
        _remember(provider.id, dynamo.from_item(answer["Attributes"]))
        return True

    return (
        yield from writes.conditional(
            lambda: _claim_expression(provider, tokens, guess, now),
            landed,
            learn,
            4,
            lambda: _Busy(),
        )
    )


class _Busy(Exception):
    """Four claims in a row met a window another instance had moved: taken as full for now."""


async def claim(provider: Provider, tokens: int) -> bool:
    if not provider.limits:
        return True
    try:
        return await dynamo.run(_claim_plan(provider, tokens))
    except _Busy:
        return False


def claim_sync(provider: Provider, tokens: int) -> bool:
    try:
        return dynamo.run_sync(_claim_plan(provider, tokens))
    except _Busy:
        return False


async def correct(provider: Provider, used: int, bound: int, claimed_at: float) -> None:
    if any(k in provider.limits for k in ("tpm", "tpd")):
        await dynamo.run(_correct_plan(provider, used, bound, claimed_at))


async def record_failure(provider: Provider, model: str, retry_after_seconds: float | None) -> None:
    await dynamo.run(_failure_plan(provider, model, retry_after_seconds))


async def record_success(provider: Provider, model: str) -> None:
    if int(state(provider.id).get(f"fail:{model}", 0)):
        await dynamo.run(_success_plan(provider, model))


def record_failure_sync(provider: Provider, model: str, retry_after_seconds: float | None) -> None:
    dynamo.run_sync(_failure_plan(provider, model, retry_after_seconds))


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
