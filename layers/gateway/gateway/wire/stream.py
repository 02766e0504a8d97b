"""The canonical stream, and the one driver that renders it in every protocol.

The chat service yields typed items: `Delta`s (OpenAI chat.completion.chunks that carry choices),
then one `Finish` (the usage chunk, with the settled cost) or one `Failure` (OpenAI's error
object). A protocol supplies a `Renderer`, a small object that turns each item into its own
events and keeps whatever its last event repeats (a Response's output items). The driver owns
what every protocol must do alike: the renderer's opening events before the first item, the
error path, a stream that ends with neither a finish nor a failure, and closing the items when
the client hangs up, which settles the request at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Protocol

import anyio


@dataclass(frozen=True, slots=True)
class Delta:
    """A chunk of the answer: an OpenAI chat.completion.chunk with at least one choice."""

    chunk: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Finish:
    """The end of a complete answer: the usage chunk (`choices: []`, `usage` with the cost in USD)."""

    chunk: dict[str, Any]

    @property
    def usage(self) -> dict[str, Any]:
        return self.chunk["usage"]


@dataclass(frozen=True, slots=True)
class Failure:
    """A failure after the first byte: OpenAI's error object (message, type, param, code)."""

    error: dict[str, Any]


Item = Delta | Finish | Failure

EMPTY = Failure(
    {
        "message": "The upstream provider ended the stream without finishing the answer.",
        "type": "server_error",
        "param": None,
        "code": "upstream_error",
    }
)


class Renderer(Protocol):
    def start(self, head: dict[str, Any] | None) -> Iterable[bytes]:
        """The protocol's opening events; `head` is the first chunk (its id and model), None if a failure came first."""
        ...

    def delta(self, chunk: dict[str, Any]) -> Iterable[bytes]: ...

    def finish(self, chunk: dict[str, Any]) -> Iterable[bytes]:
        """The closing events of a complete answer, from the usage chunk."""
        ...

    def fail(self, error: dict[str, Any]) -> Iterable[bytes]:
        """The events that end a failed stream, so that no client takes it for a clean end."""
        ...


KEEPALIVE = b": keep-alive\n\n"  # an SSE comment: every client skips it, and the connection stays open


async def _spaced(items: AsyncGenerator[Item], every: float | None) -> AsyncIterator[Item | None]:
    """The items, with None whenever `every` seconds pass without one (a provider thinking in silence).

    The next item is awaited in a task that waiting never cancels: cancelling an async generator's
    step would break it. Closing this (a client that hung up) cancels that task, then the items close.
    """
    if every is None:
        async for item in items:
            yield item
        return
    step: asyncio.Task[Item | None] | None = None
    try:
        while True:
            if step is None:
                step = asyncio.ensure_future(anext(items, None))  # type: ignore[arg-type]
            done, _ = await asyncio.wait({step}, timeout=every)
            if not done:
                yield None
                continue
            item, step = step.result(), None
            if item is None:
                return
            yield item
    finally:
        if step is not None:  # a hang-up: end the wait, and let the items finish (they settle) before they close
            step.cancel()
            with anyio.CancelScope(shield=True), contextlib.suppress(BaseException):
                await step


async def render(
    items: AsyncGenerator[Item], renderer: Renderer, keepalive: float | None = None
) -> AsyncIterator[bytes]:
    """Every item as the renderer writes it, in order; a stream that stops short ends as a failure.

    With `keepalive`, an SSE comment goes out whenever that many seconds pass with nothing to send,
    so no proxy closes a stream whose provider is thinking (API Gateway's idle limit is 5 minutes).
    """
    started = False
    # A client that hangs up closes this generator: the wait for the next item ends, then the items close.
    async with aclosing(items), aclosing(_spaced(items, keepalive)) as spaced:
        async for item in spaced:
            if item is None:
                yield KEEPALIVE
                continue
            if not started:
                started = True
                for event in renderer.start(item.chunk if isinstance(item, Delta | Finish) else None):
                    yield event
            if isinstance(item, Delta):
                for event in renderer.delta(item.chunk):
                    yield event
                continue
            ending = renderer.finish(item.chunk) if isinstance(item, Finish) else renderer.fail(item.error)
            for event in ending:
                yield event
            return
    if not started:
        for event in renderer.start(None):
            yield event
    for event in renderer.fail(EMPTY.error):
        yield event
