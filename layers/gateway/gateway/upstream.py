"""What every provider adapter offers, and the failures the router reacts to.

Adapters speak OpenAI's shape outward: `complete` returns a chat.completion dict and
`stream` yields chat.completion.chunk dicts. A failure before the first chunk is raised
from the first `__anext__`, so the caller can still fall back to another provider.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any, Protocol


class UpstreamError(Exception):
    maybe_billed = False  # whether the provider may bill an attempt that failed so: it is then charged its bound

    """The provider did not give a usable answer."""

    retryable = True  # may another provider (or a later try) succeed?

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after = retry_after


class UpstreamHTTPError(UpstreamError):
    @property
    def retryable(self) -> bool:  # type: ignore[override]
        return self.status is None or self.status in (408, 409, 429) or self.status >= 500

    @property
    def client_fault(self) -> bool:
        """The request itself was refused (bad tool schema, context too long): the caller must fix it."""
        return self.status in (400, 413, 422)


class UpstreamTimeout(UpstreamError):
    """The provider did not answer in time. `sent`: the request reached it, so it may be generating, and
    billing, an answer nobody reads; a timeout before that (connecting, waiting for a pooled
    connection) costs nothing."""

    def __init__(self, message: str, *, sent: bool = True) -> None:
        super().__init__(message)
        self.sent = sent

    @property
    def maybe_billed(self) -> bool:
        return self.sent


class UpstreamConnectError(UpstreamError):
    pass


class UpstreamLost(UpstreamConnectError):
    """The provider had the whole request, then its answer was lost (the connection broke after sending, or a
    200 came that cannot be read): it may have generated, and bill, all of it."""

    maybe_billed = True


def chat_completion(
    id: str, model: str, message: dict[str, Any], finish_reason: str, usage: dict[str, Any]
) -> dict[str, Any]:
    """A one-choice chat.completion, as the adapters that translate another protocol return it."""
    return {
        "id": id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
        "usage": usage,
    }


class Adapter(Protocol):
    async def complete(self, body: dict[str, Any]) -> dict[str, Any]: ...

    def stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]: ...
