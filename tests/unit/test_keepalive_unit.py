"""A stream whose provider is silent stays open: the driver sends SSE comments, and a hang-up still settles."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from gateway.wire.chat import stream as chat_stream
from gateway.wire.stream import KEEPALIVE, Delta, Finish, Item, render

HEAD = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": "m"}


def test_a_silent_provider_gets_keep_alive_comments_between_chunks() -> None:
    async def thinking() -> AsyncGenerator[Item]:
        yield Delta({**HEAD, "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]})
        await asyncio.sleep(0.35)  # a reasoning model thinking without a word
        yield Delta({**HEAD, "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}]})
        yield Finish({**HEAD, "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

    async def run() -> list[bytes]:
        return [e async for e in render(thinking(), chat_stream.Renderer(include_usage=True), keepalive=0.1)]

    events = asyncio.run(run())
    assert 2 <= events.count(KEEPALIVE) <= 4  # one every 0.1 s of the 0.35 s of silence
    assert events[0].startswith(b"data: ") and events[-1] == chat_stream.DONE
    assert KEEPALIVE.startswith(b":")  # an SSE comment, which every SSE client skips


def test_a_client_hanging_up_during_the_silence_closes_the_items() -> None:
    closed = []

    async def silent() -> AsyncGenerator[Item]:
        try:
            yield Delta({**HEAD, "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]})
            await asyncio.sleep(30)
            yield Delta({**HEAD, "choices": [{"index": 0, "delta": {"content": "late"}, "finish_reason": None}]})
        finally:
            closed.append(True)  # the chat service settles here

    async def run() -> None:
        events = render(silent(), chat_stream.Renderer(include_usage=True), keepalive=0.05)
        assert (await anext(events)).startswith(b"data: ")
        assert await anext(events) == KEEPALIVE
        await events.aclose()  # type: ignore[attr-defined]

    asyncio.run(asyncio.wait_for(run(), 5))
    assert closed == [True]
