"""One chat completion from admission to settlement.

Fallback happens only before the first byte reaches the client: after that the answer is
the client's, and a failure becomes an error event at the end of the stream. Whatever
happens (an answer, a refusal upstream, a cut stream, a client that hangs up) the request
is settled exactly once, before the response completes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import anyio

from gateway.accounts import plans, settlement
from gateway.accounts.keys import ApiKey
from gateway.catalog import catalog
from gateway.chat import custom_tools
from gateway.chat.call import Call, Reply, client_error
from gateway.chat.egress import Offer
from gateway.errors import GatewayError
from gateway.providers import registry
from gateway.routing import health
from gateway.routing.resolve import resolve
from gateway.upstream import UpstreamError, UpstreamTimeout
from gateway.wire.chat import shape
from gateway.wire.chat.request import ChatRequest
from gateway.wire.stream import Delta, Failure, Finish, Item


async def handle(chat: ChatRequest, key: ApiKey, request_id: str) -> Reply:
    if settlement.pending():
        await settlement.catch_up()
    plan = plans.effective(key.record)
    cat = catalog()
    await health.refresh(p for p in cat.providers.values() if registry.available(p))
    found = resolve(chat.body, plan.allows)
    call = Call(chat, key, request_id)
    await call.admit(plan, found)
    assert call.admission is not None
    headers = call.admission.headers()
    try:
        if chat.stream:
            stream = await _open_stream(call)
            return Reply({**headers, **call.answered_by()}, stream=stream)
        result = await _complete(call)
    except GatewayError as exc:
        raise await call.fail(exc) from None
    except BaseException:
        call.outcome.status = "cancelled"
        await call.settle()
        raise
    cost = await call.settle()
    if cost is not None:
        result["usage"]["cost"] = float(cost)
        headers["x-gateway-cost"] = str(cost)
    return Reply({**headers, **call.answered_by()}, body=result)


async def _complete(call: Call) -> dict[str, Any]:
    offer, data = await call.attempt(lambda o: o.candidate.adapter.complete(o.body))
    call.chose(offer)
    candidate = offer.candidate
    outcome = call.outcome
    result = shape.whole(
        data,
        id=call.generation_id,
        model=candidate.model.id,
        provider=candidate.provider.id,
        prompt_estimate=outcome.prompt_tokens,
    )
    for choice in result["choices"] if offer.customs else ():  # converted custom tools' calls, as custom calls
        message = choice["message"]
        if message.get("tool_calls"):
            message["tool_calls"] = [custom_tools.restored(c, offer.customs) for c in message["tool_calls"]]
    reported = data.get("usage")
    outcome.take(result["usage"], isinstance(reported, dict) and isinstance(reported.get("prompt_tokens"), int))
    outcome.finish_reason = result["choices"][0]["finish_reason"] if result["choices"] else None
    return result


async def _close(iterator: AsyncIterator[Any]) -> None:
    """Close the upstream even while being cancelled (the client hung up), so no connection leaks."""
    with anyio.CancelScope(shield=True), contextlib.suppress(Exception):  # the stream is over either way
        await iterator.aclose()  # type: ignore[attr-defined]


async def _open_stream(call: Call) -> AsyncGenerator[Item]:
    """Start the upstream stream (falling back until one yields a first chunk) and return the canonical stream."""

    async def start(offer: Offer) -> tuple[AsyncIterator[dict[str, Any]], Any]:
        upstream = offer.candidate.adapter.stream(offer.body)
        try:
            return upstream, await anext(upstream)
        except StopAsyncIteration as exc:
            raise UpstreamError(f"{offer.candidate.provider.name} sent an empty stream") from exc
        except BaseException:
            await _close(upstream)
            raise

    offer, (upstream, first) = await call.attempt(start)
    call.chose(offer)
    call.outcome.first_token_ms = call.outcome.latency_ms
    return _items(call, offer.candidate.model.id, upstream, first)


async def _items(
    call: Call, model: str, upstream: AsyncIterator[dict[str, Any]], first: dict[str, Any]
) -> AsyncGenerator[Item]:
    """The canonical stream (wire/stream.py): Deltas, then the Finish (usage, cost included) or a Failure.

    Every protocol renders these through one driver; settlement happens here, before the last item.
    """
    outcome = call.outcome
    head = {"id": call.generation_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
    started: set[int] = set()
    reported: dict[str, Any] | None = None
    chunk: dict[str, Any] | None = first
    held = custom_tools.Held(call.offer.customs) if call.offer is not None and call.offer.customs else None
    outcome.status = "cancelled"  # until the stream ends one way or the other
    try:
        while chunk is not None:
            if isinstance(chunk.get("usage"), dict):
                reported = chunk["usage"]
                if isinstance(reported.get("prompt_tokens"), int):
                    outcome.take_prompt(reported)
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
                    outcome.completion_tokens += shape.completion_tokens(delta)
                    reason = shape.finish_reason(choice.get("finish_reason"))
                    choice["finish_reason"] = reason
                    if reason:
                        outcome.finish_reason = reason
                    if held is not None:  # converted custom tools' calls: whole, with the choice's end
                        held.take(index, delta)
                        if reason and (released := held.release(index)):
                            delta["tool_calls"] = [*delta.get("tool_calls", ()), *released]
                yield Delta({**head, "choices": choices})
            chunk = await anext(upstream, None)
        for index in sorted({key[0] for key in held.calls}) if held is not None else ():  # choices left unfinished
            delta = {"tool_calls": held.release(index)}
            yield Delta({**head, "choices": [{"index": index, "delta": delta, "finish_reason": None}]})
        usage = shape.usage(outcome.prompt_tokens, outcome.completion_tokens, reported)
        outcome.status = "ok"
        outcome.take(usage, reported is not None)
        cost = await call.settle()
        if cost is not None:
            usage["cost"] = float(cost)
        yield Finish({**head, "choices": [], "usage": usage})
    except UpstreamError as exc:
        error = client_error(exc)
        outcome.status, outcome.http_status, outcome.error = "error", error.status, exc.message
        if isinstance(exc, UpstreamTimeout) and call.offer is not None:
            # A provider that stopped sending may still be generating, and billing, the rest of the answer.
            outcome.completion_tokens = max(outcome.completion_tokens, call.offer.output)
        await call.settle()
        yield Failure(error.body()["error"])
    finally:
        await _close(upstream)
        await call.settle()  # the client hung up: bill what it was sent
