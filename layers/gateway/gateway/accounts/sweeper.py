"""Settles reservations that a crashed or timed-out invocation never settled.

A reservation older than the chat function's timeout can no longer be settled by its
request. Its provider may have served it in full (the invocation may have died, or lost its
store, after the answer was sent), so it is charged what it held, the bound of what could
have been billed, and counted as an error: never released unbilled. The charge is settlement
itself, so a request that does settle at the last moment and the sweeper cannot both count it.

It finds accounts through the sparse index `open-reservations`: admission sets the index's
keys (`open_shard`, `open_at` = its oldest reservation since the last sweep) on the account
item, and only then, so a query reads the accounts that opened a reservation before the
cut-off and nothing else, however many items the table holds. Each visit moves `open_at`
to the oldest reservation still open, or removes the keys once none is.
"""

from __future__ import annotations

import time
from typing import Any

from gateway.accounts import account, settlement
from gateway.stats.counters import Sample
from gateway.storage import dynamo, schema
from gateway.storage.schema import Reservation

DEFAULT_AGE_SECONDS = 960  # the chat function's 900 s timeout, and a minute to spare


def _visit(pk: str, now: float, age: float) -> int:
    """Release the account's stale reservations and re-index what stays open; how many were released."""
    key_id = schema.key_id_of(pk)
    raw = dynamo.send_sync(account.get_op(key_id))
    entries = account.reservations(dynamo.from_item(raw.get("Item") or {}))
    released, left = 0, []
    for request_id, entry in entries.items():
        reservation = Reservation.of(key_id, request_id, entry)
        if reservation.at >= now - age:
            left.append(reservation.at)
            continue
        bound = Sample(reservation.tokens, 0, reservation.amount, error=True, latency_ms=int(age * 1000))
        if settlement.settle_sync(reservation, bound, now=now) is not None:
            released += 1
    account.reindex(key_id, min(left) if left else None)
    return released


def sweep(age: float = DEFAULT_AGE_SECONDS, now: float | None = None) -> dict[str, Any]:
    now = now or time.time()
    accounts = account.indexed_before(int(now - age))
    return {"released": sum(_visit(pk, now, age) for pk in accounts), "accounts": len(accounts)}
