"""OpenAI chat completions: the canonical stream as Server-Sent Events."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

DONE = b"data: [DONE]\n\n"


def event(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


class Renderer:
    """Chunks as they come; the usage chunk unless the caller turned it off; `[DONE]`, or a plain error event.

    The error is OpenAI's own `data: {"error": {...}}`: a chunk-shaped one (with `choices`) is taken
    by some clients (the AI SDK's chat model) for an ordinary chunk, and the stream for a clean end.
    """

    def __init__(self, include_usage: bool) -> None:
        self.include_usage = include_usage

    def start(self, head: dict[str, Any] | None) -> Iterator[bytes]:
        return iter(())

    def delta(self, chunk: dict[str, Any]) -> Iterator[bytes]:
        yield event(chunk)

    def finish(self, chunk: dict[str, Any]) -> Iterator[bytes]:
        if self.include_usage:
            yield event(chunk)
        yield DONE

    def fail(self, error: dict[str, Any]) -> Iterator[bytes]:
        yield event({"error": error})
