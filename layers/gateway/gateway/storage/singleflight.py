"""Concurrent misses for the same thing share one read instead of each making their own.

The read runs in a task of its own: a caller that is cancelled (a client that hung up) stops waiting for
it, but neither cancels it nor passes its cancellation on to the other callers waiting for the same read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import TypeVar

T = TypeVar("T")


class SingleFlight:
    def __init__(self) -> None:
        self._flights: dict[Hashable, asyncio.Task[object]] = {}

    async def do(self, key: Hashable, load: Callable[[], Awaitable[T]]) -> T:
        flight = self._flights.get(key)
        if flight is None:
            flight = asyncio.ensure_future(load())  # type: ignore[arg-type]
            self._flights[key] = flight
            flight.add_done_callback(lambda done: self._landed(key, done))
        return await asyncio.shield(flight)  # type: ignore[return-value]

    def _landed(self, key: Hashable, done: asyncio.Task[object]) -> None:
        if self._flights.get(key) is done:
            del self._flights[key]
        if not done.cancelled():
            done.exception()  # retrieved: no "never retrieved" warning when every caller stopped waiting
