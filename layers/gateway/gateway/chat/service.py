"""One chat completion: pick the candidate that answers first, shape the answer, account for it.

Fallback happens only before the first byte reaches the client: after that the answer is
the client's, and a failure becomes an error event at the end of the stream.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import orjson

from gateway import tokens
from gateway.chat import shape
from gateway.chat.validation import ChatRequest
from gateway.config import settings
from gateway.errors import GatewayError, upstream_error, upstream_timeout
from gateway.providers.base import UpstreamError, UpstreamHTTPError, UpstreamTimeout
from gateway.routing.resolve import Candidate, candidates

T = TypeVar("T")
GATEWAY_FIELDS = ("models", "provider", "model_id")  # ours to read, not the upstream's


@dataclass(slots=True)
class Outcome:
    """What happened, for logs now and for billing and statistics."""

    model: str
    provider: str | None = None
    status: str = "ok"  # ok | error | cancelled
    http_status: int = 200
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usage_reported: bool = False
    started: float = field(default_factory=time.perf_counter)
    first_token_ms: float | None = None
    error: str | None = None

    @property
    def latency_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000


def upstream_body(body: dict[str, Any], upstream_model: str, stream: bool) -> dict[str, Any]:
    sent = {k: v for k, v in body.items() if k not in GATEWAY_FIELDS}
    sent["model"] = upstream_model
    if not stream:
        sent.pop("stream", None)
        sent.pop("stream_options", None)
    return sent


def client_error(exc: UpstreamError) -> GatewayError:
    if isinstance(exc, UpstreamTimeout):
        return upstream_timeout(settings().upstream_timeout)
    if isinstance(exc, UpstreamHTTPError) and exc.client_fault:
        return GatewayError(400, exc.message, code="upstream_rejected_request")
    return upstream_error(exc.message)


async def first_success(
    found: list[Candidate], chat: ChatRequest, call: Callable[[Candidate, dict[str, Any]], Awaitable[T]]
) -> tuple[Candidate, T]:
    """The first candidate that answers; a refusal the caller caused is not retried elsewhere."""
    last: UpstreamError | None = None
    for candidate in found:
        try:
            body = upstream_body(chat.body, candidate.offering.upstream_model, chat.stream)
            return candidate, await call(candidate, body)
        except UpstreamError as exc:
            last = exc
            if isinstance(exc, UpstreamHTTPError) and exc.client_fault:
                break
    assert last is not None
    raise client_error(last)


async def complete(chat: ChatRequest, outcome: Outcome) -> dict[str, Any]:
    model, found = candidates(chat.model)
    outcome.prompt_tokens = tokens.count_messages(chat.body["messages"])
    candidate, data = await first_success(found, chat, lambda c, body: c.adapter.complete(body))
    outcome.provider = candidate.provider.id
    result = shape.whole(
        data, model=model.id, provider=candidate.provider.id, prompt_estimate=outcome.prompt_tokens
    )
    outcome.usage_reported = isinstance((data.get("usage") or {}).get("prompt_tokens"), int)
    outcome.prompt_tokens = result["usage"]["prompt_tokens"]
    outcome.completion_tokens = result["usage"]["completion_tokens"]
    outcome.finish_reason = result["choices"][0]["finish_reason"] if result["choices"] else None
    return result


async def _close(iterator: AsyncIterator[Any]) -> None:
    """Close the upstream even while being cancelled (the client hung up), so no connection leaks."""
    with anyio.CancelScope(shield=True), contextlib.suppress(Exception):  # the stream is over either way
        await iterator.aclose()  # type: ignore[attr-defined]


async def open_stream(chat: ChatRequest, outcome: Outcome) -> AsyncIterator[bytes]:
    """Start the upstream stream (falling back until one yields a first chunk) and return the SSE body."""
    model, found = candidates(chat.model)
    outcome.prompt_tokens = tokens.count_messages(chat.body["messages"])

    async def start(candidate: Candidate, body: dict[str, Any]) -> tuple[AsyncIterator[dict[str, Any]], Any]:
        upstream = candidate.adapter.stream(body)
        try:
            return upstream, await anext(upstream)
        except StopAsyncIteration as exc:
            raise UpstreamError(f"{candidate.provider.name} sent an empty stream") from exc
        except BaseException:
            await _close(upstream)
            raise

    candidate, (upstream, first) = await first_success(found, chat, start)
    outcome.provider = candidate.provider.id
    outcome.first_token_ms = outcome.latency_ms
    return _sse(chat, model.id, upstream, first, outcome)


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


async def _sse(
    chat: ChatRequest,
    model: str,
    upstream: AsyncIterator[dict[str, Any]],
    first: dict[str, Any],
    outcome: Outcome,
) -> AsyncIterator[bytes]:
    head = {
        "id": shape.completion_id(),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }
    started: set[int] = set()
    reported: dict[str, Any] | None = None
    delivered = 0
    chunk: dict[str, Any] | None = first
    outcome.status = "cancelled"  # until the stream ends one way or the other
    try:
        while chunk is not None:
            if isinstance(chunk.get("usage"), dict):
                reported = chunk["usage"]
            choices = chunk.get("choices")
            if choices:
                for choice in choices:
                    delta = choice.get("delta")
                    if not isinstance(delta, dict):
                        choice["delta"] = delta = {}
                    index = choice.setdefault("index", 0)
                    if index not in started:
                        started.add(index)
                        delta.setdefault("role", "assistant")
                    delivered += shape.completion_tokens(delta)
                    reason = shape.finish_reason(choice.get("finish_reason"))
                    choice["finish_reason"] = reason
                    if reason:
                        outcome.finish_reason = reason
                yield _event({**head, "choices": choices})
            chunk = await anext(upstream, None)
    except UpstreamError as exc:
        error = client_error(exc)
        outcome.status, outcome.http_status, outcome.error = "error", error.status, exc.message
        outcome.completion_tokens = delivered
        yield _event({**head, "choices": [], **error.body()})
        return
    finally:
        await _close(upstream)
        if outcome.status == "cancelled":
            outcome.completion_tokens = delivered
    result = shape.usage(outcome.prompt_tokens, delivered, reported)
    outcome.status = "ok"
    outcome.usage_reported = reported is not None
    outcome.prompt_tokens = result["prompt_tokens"]
    outcome.completion_tokens = result["completion_tokens"]
    if chat.include_usage:
        yield _event({**head, "choices": [], "usage": result})
    yield b"data: [DONE]\n\n"
