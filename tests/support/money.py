"""Money read back from JSON, compared exactly."""

from __future__ import annotations

from decimal import Decimal


def usd(value: float | int | str) -> Decimal:
    """A JSON amount of USD as the decimal it was written from.

    `Decimal(0.1)` is the binary float's exact value, not 0.1: money read from a JSON number must go
    through its shortest text (`str`), as the gateway wrote it.
    """
    return Decimal(str(value))
