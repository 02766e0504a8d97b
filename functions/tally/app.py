"""TallyFunction: the usage table's stream, a batch at a time, added into the usage counters."""

from __future__ import annotations

import time
from typing import Any

from gateway.stats import tallies


def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    return {"transactions": tallies.count(event.get("Records") or [], time.time())}
