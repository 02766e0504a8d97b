"""SweeperFunction: on a schedule, releases reservations that no request will settle any more."""

from __future__ import annotations

import os
from typing import Any

from gateway.accounts import sweeper


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    age = float(os.environ.get("RESERVATION_MAX_AGE_SECONDS", sweeper.DEFAULT_AGE_SECONDS))
    return sweeper.sweep(age)
