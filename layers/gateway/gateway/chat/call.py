"""One admitted request: its offers, the attempts at them, and the settlement that happens exactly once.

Admission reserves what the dearest offer could bill; an attempt that may have been billed though
its answer never came (a timeout after sending, a connection lost mid-answer) is charged its
bound; settlement charges what was delivered and releases the rest, through whatever the store
does, and logs and measures the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, TypeVar

import anyio

from gateway import telemetry
from gateway.accounts import admission, plans, settlement
from gateway.accounts.keys import ApiKey
from gateway.catalog import Price
from gateway.chat import egress
from gateway.chat.egress import Offer
from gateway.config import settings
from gateway.errors import (
    GatewayError,
    invalid_request,
    retry_soon,
    service_unavailable,
    upstream_error,
    upstream_timeout,
)
from gateway.routing import health
from gateway.routing.resolve import Candidate
from gateway.stats import generations
from gateway.stats.counters import Sample
from gateway.storage import dynamo
from gateway.upstream import UpstreamError, UpstreamHTTPError, UpstreamTimeout
from gateway.wire.chat.request import ChatRequest
from gateway.wire.stream import Item

log = telemetry.logger
T = TypeVar("T")
STORE_ERRORS = (dynamo.StoreError,)
# Bills being written, held here so that no task is collected before it lands (a caller may have hung up).
_billing: set[asyncio.Task[Decimal | None]] = set()


async def _backoff(attempt: int) -> None:
    with anyio.CancelScope(shield=True):  # a client hang-up must not cut short what money needs
        await anyio.sleep(min(0.1 * 2**attempt, 2.0))


@dataclass(slots=True)
class Outcome:
    """What happened: for settlement, logs and statistics."""

    model: str
    provider: str | None = None
    price: Price | None = None
    status: str = "ok"  # ok | error | cancelled
    http_status: int = 200
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # of the prompt, read from the provider's cache
    cache_write_tokens: int = 0  # of the prompt, written to it
    cache_write_1h_tokens: int = 0  # of those, written to live an hour
    usage_reported: bool = False
    prompt_reported: bool = False
    # Attempts that timed out after their request was sent: their providers may bill them in full.
    timed_out_cost: Decimal = Decimal(0)
    timed_out_prompt: int = 0
    timed_out_output: int = 0
    timed_out_provider_cost: Decimal = Decimal(0)
    long_cache: bool = False  # the body sent may write one-hour cache entries
    started: float = field(default_factory=time.perf_counter)
    first_token_ms: float | None = None
    cost: Decimal | None = None
    error: str | None = None

    @property
    def latency_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000

    def take(self, usage: dict[str, Any], reported: bool) -> None:
        """The usage the answer reports (shape.usage's), with the cache split that prices the prompt."""
        self.usage_reported = reported
        self.completion_tokens = usage["completion_tokens"]
        self.take_prompt(usage, reported)

    def take_prompt(self, usage: dict[str, Any], reported: bool = True) -> None:
        """The provider's own count of the prompt, final as soon as it arrives (Anthropic sends it first)."""
        self.prompt_tokens = usage["prompt_tokens"]
        self.prompt_reported = self.prompt_reported or reported
        details = usage.get("prompt_tokens_details")
        details = details if isinstance(details, dict) else {}
        self.cached_tokens, self.cache_write_tokens, self.cache_write_1h_tokens = (
            value if isinstance(value, int) and not isinstance(value, bool) else 0
            for value in (
                details.get("cached_tokens"),
                details.get("cache_write_tokens"),
                details.get("cache_write_1h_tokens"),
            )
        )
        if self.long_cache and "cache_write_1h_tokens" not in details:
            self.cache_write_1h_tokens = self.cache_write_tokens  # no split said: every write may live an hour

    def price_of(self, prompt: int, completion: int, price: Price | None = None) -> Decimal:
        """What these tokens cost at the offering's price (or another: the provider's cost), with the cache split."""
        price = price or self.price
        if price is None:
            return Decimal(0)
        return price.cost(prompt, completion, self.cached_tokens, self.cache_write_tokens, self.cache_write_1h_tokens)


@dataclass(slots=True)
class Reply:
    """What a protocol renders: a whole chat.completion or the canonical stream (`_items`), and headers."""

    headers: dict[str, str]
    body: dict[str, Any] | None = None
    stream: AsyncGenerator[Item] | None = None


def client_error(exc: UpstreamError) -> GatewayError:
    if isinstance(exc, UpstreamTimeout):  # say which limit ran out: connecting, or waiting for the answer
        cfg = settings()
        return upstream_timeout(cfg.upstream_timeout if exc.sent else cfg.upstream_connect_timeout, not exc.sent)
    if isinstance(exc, UpstreamHTTPError) and exc.client_fault:
        return GatewayError(400, exc.message, code="upstream_rejected_request")
    return upstream_error(exc.message)


def _cost_price(offer: Offer) -> Price:
    """What the offering's provider charges the operator; its price where the catalog states no cost (a margin of
    nothing, never an invented one: `gateway-admin catalog check` lists such offerings)."""
    return offer.candidate.offering.cost or offer.price


class Call:
    """One admitted request: its account, its outcome, and the settlement that must happen once."""

    def __init__(self, chat: ChatRequest, key: ApiKey, request_id: str) -> None:
        self.chat = chat
        self.key = key
        self.request_id = request_id
        self.outcome = Outcome(model=chat.model)
        self.generation_id = generations.new_id()
        self.upstream_model: str | None = None
        self.admission: admission.Admission | None = None
        self.offers: list[Offer] = []
        self.offer: Offer | None = None  # the one that answered
        self.started_at = time.time()
        self.plan: plans.Plan | None = None
        self._settled = False

    async def attempt(self, call: Callable[[Offer], Awaitable[T]]) -> tuple[Offer, T]:
        """The first offer that answers, falling back on 429, 5xx, timeouts and connection failures.

        A provider at its own limit is skipped without a call; one that fails is reported to the
        shared health record; a refusal the caller caused is not retried elsewhere. An attempt that
        timed out after its request was sent may still be billed in full, so it is charged its
        bound, and the next offer is tried only when the reservation covers both (it is extended
        when the key's credit allows).
        """
        last: UpstreamError | None = None
        for offer in self.offers:
            candidate = offer.candidate
            if not await health.claim(candidate.provider, offer.tokens):
                continue
            if self.outcome.timed_out_cost and not await self._covers(offer):
                break
            try:
                result = await call(offer)
            except UpstreamError as exc:
                last = exc
                if isinstance(exc, UpstreamHTTPError) and exc.client_fault:
                    break
                if exc.maybe_billed:
                    self.timed_out(offer)
                retry_after = exc.retry_after if isinstance(exc, UpstreamHTTPError) and exc.status == 429 else None
                await health.record_failure(candidate.provider, candidate.offering.upstream_model, retry_after)
                continue
            await health.record_success(candidate.provider, candidate.offering.upstream_model)
            return offer, result
        if last is None:
            wait = health.retry_after((o.candidate.provider, o.candidate.offering.upstream_model) for o in self.offers)
            raise service_unavailable("Every provider for this model is at its rate limit right now.", retry_after=wait)
        raise client_error(last)

    def timed_out(self, offer: Offer) -> None:
        """Charge an attempt that may have been served though its answer never came (it timed out after it was
        sent, or its connection broke mid-answer): the most it can bill."""
        o = self.outcome
        o.timed_out_cost += offer.cost
        o.timed_out_provider_cost += _cost_price(offer).most(offer.prompt, offer.output, offer.long_cache, offer.writes)
        o.timed_out_prompt += offer.prompt
        o.timed_out_output += offer.output

    async def _covers(self, offer: Offer) -> bool:
        """Whether the reservation covers the timed-out attempts and `offer` too, extending it if need be."""
        assert self.admission is not None and self.plan is not None
        needed = self.outcome.timed_out_cost + offer.cost
        reservation = self.admission.reservation
        if reservation.free:
            return needed <= self.plan.free_request_cost
        if needed <= reservation.amount:
            return True
        try:
            extended = await admission.extend(reservation, needed - reservation.amount)
        except STORE_ERRORS:
            return False
        if extended is None:
            return False
        self.admission = replace(self.admission, reservation=extended)
        return True

    async def admit(self, plan: plans.Plan, found: list[Candidate]) -> None:
        """Reserve what the dearest offer could bill, with one output limit that fits the plan and the credit.

        A caller who set no limit gets the model's maximum, lowered to what the key's minute
        window and credit leave room for, and the upstream is sent that limit.
        """
        chat = self.chat
        self.plan = plan
        requested = chat.max_tokens
        self.offers = egress.offers(chat.body, found, requested, chat.stream)
        if not requested:
            room = (plan.tpm - max(o.estimate for o in self.offers)) // self.offers[0].choices
            if 1 <= room < max(o.output // o.choices for o in self.offers):
                self.offers = [o.limited(room) for o in self.offers]
        self._fits(plan)
        try:
            await self._reserve(plan)
        except admission.InsufficientCredit as exc:
            limit = None if requested else self._affordable(exc.available)
            if limit is None:
                raise
            self.offers = [o.limited(limit) for o in self.offers]
            await self._reserve(plan)

    async def _reserve(self, plan: plans.Plan) -> None:
        """Admit, trying again while the store does not answer: the write is idempotent, so a retry learns
        whether an earlier attempt that seemed to fail had landed, and admits once."""
        # The reservation's id is the gateway's own (the generation id), never one a caller could choose.
        amount, needed = egress.worst(self.offers)
        key_id, rid = self.key.key_id, self.generation_id
        deadline = time.monotonic() + settings().store_retry_seconds
        attempt = 0
        while True:
            try:
                self.admission = await admission.admit(key_id, rid, plan, amount, needed)
                return
            except STORE_ERRORS as exc:
                if time.monotonic() >= deadline:
                    log.warning(
                        "admission unresolved", extra={"request_id": self.request_id, "error": type(exc).__name__}
                    )
                    # It may have landed: released (never charged) once the store answers this process again.
                    settlement.later(functools.partial(settlement.release, key_id, rid))
                    raise retry_soon(
                        "The gateway could not reach its account store, and nothing was sent to a provider; "
                        "please retry. If a credit hold was placed before the store went away, this gateway "
                        "releases it, unbilled, when the store answers again.",
                        "storage_unavailable",
                    ) from None
            await _backoff(attempt)
            attempt += 1

    def _fits(self, plan: plans.Plan) -> None:
        """A request no minute of the plan could admit is the caller's to change: a 400, not a retried 429."""
        prompt = min(o.estimate for o in self.offers)
        needed = min(o.tokens for o in self.offers)
        if needed <= plan.tpm:
            return
        body = self.chat.body
        param = "messages" if prompt >= plan.tpm else next(f for f in egress.LIMIT_FIELDS if body.get(f) is not None)
        raise invalid_request(
            f"This request may use up to {needed} tokens (about {prompt} of them its prompt), more than this "
            f"key's limit of {plan.tpm} tokens a minute; "
            + ("shorten the prompt." if param == "messages" else f"lower '{param}'."),
            param,
            "tokens_over_limit",
        )

    def _affordable(self, available: Decimal) -> int | None:
        """The largest output limit (per choice) whose reservation the available credit covers, if any."""
        low, high = 0, max(o.output // o.choices for o in self.offers)
        while low < high:
            mid = (low + high + 1) // 2
            if egress.cost_at(self.offers, mid) <= available:
                low = mid
            else:
                high = mid - 1
        return low or None

    def chose(self, offer: Offer) -> None:
        candidate = offer.candidate
        self.outcome.model = candidate.model.id
        self.outcome.provider = candidate.provider.id
        self.upstream_model = candidate.offering.upstream_model
        self.outcome.price = offer.price
        self.outcome.long_cache = offer.long_cache
        # Until the provider reports its count, the prompt is what it may bill at most: a stream cut
        # before its usage chunk (or a provider that reports none) is billed that, never an estimate.
        self.outcome.prompt_tokens = offer.prompt
        self.offer = offer

    def record(self, sample: Sample) -> dict[str, Any]:
        """The generation record: what GET /v1/generation shows its owner."""
        o = self.outcome
        return {
            "id": self.generation_id,
            "request_id": self.request_id,
            "created": int(time.time()),
            "model": o.model,
            "provider": o.provider,
            "upstream_model": self.upstream_model,
            "streamed": self.chat.stream,
            "status": o.status,
            "http_status": o.http_status,
            "finish_reason": o.finish_reason,
            "prompt_tokens": sample.prompt_tokens,
            "completion_tokens": sample.completion_tokens,
            "cached_tokens": o.cached_tokens,
            "cache_write_tokens": o.cache_write_tokens,
            "usage_reported": o.usage_reported,
            "latency_ms": sample.latency_ms,
            "ttft_ms": sample.ttft_ms,
            "error": (o.error or "")[:500] or None,
        }

    async def settle(self) -> Decimal | None:
        """Charge what was delivered and release the rest, once; log and measure the request.

        A settlement the store refuses is tried again until the store's retry time is up, then kept
        to try with this process's next request; the sweeper charges it in full if it never lands.
        """
        if self._settled or self.admission is None:
            return self.outcome.cost
        self._settled = True
        o = self.outcome
        delivered = o.status != "error" or o.completion_tokens > 0
        prompt = o.prompt_tokens if delivered else 0
        completion = o.completion_tokens
        if not o.usage_reported and self.offer is not None:  # counted, never more than the limit sent
            completion = min(completion, self.offer.output)
        cost = (o.price_of(prompt, completion) if delivered else Decimal(0)) + o.timed_out_cost
        served = o.price_of(prompt, completion, _cost_price(self.offer)) if delivered and self.offer else Decimal(0)
        ttft = int(o.first_token_ms) if self.chat.stream and o.first_token_ms is not None else None
        sample = Sample(
            prompt + o.timed_out_prompt,
            completion + o.timed_out_output,
            cost,
            o.status == "error",
            int(o.latency_ms),
            ttft,
            provider_cost=served + o.timed_out_provider_cost,
        )
        window = self._window(prompt if delivered else 0, completion)
        write = functools.partial(
            settlement.settle,
            self.admission.reservation,
            sample,
            o.model,
            o.provider,
            self.record(sample),
            window=window,
            now=time.time(),  # once: every retry, here or with a later request, sends the very same transaction
        )
        # The bill is written in a task of its own. A caller who hangs up mid-stream cancels the request's task
        # with asyncio's own cancel, which no anyio shield stops; this task is not cancelled with it.
        task = asyncio.ensure_future(self._bill(write, cost, window, sample, ttft))
        _billing.add(task)
        task.add_done_callback(_billing.discard)
        return await asyncio.shield(task)

    async def _bill(
        self,
        write: Callable[[], Awaitable[Decimal | None]],
        cost: Decimal,
        window: int,
        sample: Sample,
        ttft: int | None,
    ) -> Decimal | None:
        """Write the settlement, retrying until the store's retry time is up, then kept to try with this
        process's next request; then the provider's windows, the log line and the metrics."""
        o = self.outcome
        deadline = time.monotonic() + settings().store_retry_seconds
        attempt = 0
        while True:
            try:
                charged = await write()
                o.cost = charged if charged is not None else cost
                break
            except Exception:  # the transaction is idempotent: trying again cannot charge twice
                if time.monotonic() >= deadline:
                    log.exception("settlement failed; kept to write with this process's next request")
                    settlement.later(write)
                    o.cost = cost
                    break
                await _backoff(attempt)
                attempt += 1
        if self.offer is not None:  # the provider's windows held the estimate; they keep what was used
            with contextlib.suppress(dynamo.StoreError):
                await health.correct(self.offer.candidate.provider, window, self.offer.tokens, self.started_at)
        telemetry.request_done(
            {
                "request_id": self.request_id,
                "generation_id": self.generation_id,
                "key_id": self.key.key_id,
                "model": o.model,
                "provider": o.provider,
                "status": o.status,
                "http_status": o.http_status,
                "finish_reason": o.finish_reason,
                "prompt_tokens": sample.prompt_tokens,
                "completion_tokens": sample.completion_tokens,
                "cost": str(o.cost) if o.cost is not None else None,
                "latency_ms": sample.latency_ms,
                "ttft_ms": ttft,
                "error": o.error,
            }
        )
        return o.cost

    def _window(self, prompt: int, completion: int) -> int:
        """The tokens the rate windows keep: the provider's counts where it gave them, else estimates (a cut
        stream's bounds are billed, but a tokenizer likely made a third of them)."""
        o, offer = self.outcome, self.offer
        if o.usage_reported or offer is None:
            return prompt + completion + o.timed_out_prompt + o.timed_out_output
        estimated = prompt if o.prompt_reported or not prompt else offer.estimate
        return estimated + -(-completion // egress.BYTES_PER_TOKEN) + o.timed_out_prompt + o.timed_out_output

    def answered_by(self) -> dict[str, str]:
        return {"x-gateway-model": self.outcome.model, "x-gateway-provider": self.outcome.provider or ""}

    async def fail(self, error: GatewayError) -> GatewayError:
        self.outcome.status, self.outcome.http_status, self.outcome.error = "error", error.status, error.message
        await self.settle()
        if self.admission is not None:
            error.headers = {**self.admission.headers(), **error.headers}
        return error
