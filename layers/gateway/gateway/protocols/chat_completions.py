"""OpenAI chat completions: the canonical stream as Server-Sent Events."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

import orjson

DONE = b"data: [DONE]\n\n"


def event(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


async def sse(chunks: AsyncGenerator[dict[str, Any]], include_usage: bool) -> AsyncIterator[bytes]:
    """Chunks as they come; the usage chunk unless the caller turned it off; `[DONE]`, or a plain error event.

    The error is OpenAI's own `data: {"error": {...}}`: a chunk-shaped one (with `choices`) is taken
    by some clients (the AI SDK's chat model) for an ordinary chunk, and the stream for a clean end.
    """
    async with aclosing(chunks):  # a client that hangs up closes this generator: the canonical one settles now
        async for chunk in chunks:
            if "error" in chunk:
                yield event(chunk)
                return
            if chunk["choices"] or include_usage:
                yield event(chunk)
    yield DONE
