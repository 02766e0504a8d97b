"""Concurrent misses for the same thing share one read instead of each making their own."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import TypeVar

T = TypeVar("T")


class SingleFlight:
    def __init__(self) -> None:
        self._flights: dict[Hashable, asyncio.Future[object]] = {}

    async def do(self, key: Hashable, load: Callable[[], Awaitable[T]]) -> T:
        flight = self._flights.get(key)
        if flight is not None:
            return await asyncio.shield(flight)  # type: ignore[return-value]
        flight = asyncio.get_running_loop().create_future()
        self._flights[key] = flight
        try:
            result = await load()
        except BaseException as exc:
            flight.set_exception(exc)
            flight.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        else:
            flight.set_result(result)
            return result
        finally:
            del self._flights[key]
