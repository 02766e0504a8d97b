"""Usage counters built from the usage table's stream: each settled request's tally, added up in batches.

Settlement writes two items (the account and the request's record, which carries its tally:
the billed sample, its day, model and provider); the counters every statistics view reads (the
key's day and month, and the day's gateway, model and provider counters) are derived here, by
the TallyFunction that the table's stream invokes with batches of new records (template.yaml
passes it only INSERTs that carry a tally). Locally, gateway-local's stream reader does the same
(gateway/local/streams.py).

A batch is counted exactly once: its sums go out in one transaction together with a marker item
named by the batch's first and last stream event ids, put on condition that it is new. A batch
that Lambda retries after its transaction landed finds the marker and is skipped; one whose
transaction did not land is counted whole. A batch touching more items than a transaction takes
is cut into parts, each with its own marker, the same way on every retry.

A batch of a hundred requests writes one update per counter it touches (a few dozen at most),
instead of seven transactional writes per request.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from gateway.config import settings
from gateway.stats import counters
from gateway.stats.counters import FIELDS, Sample
from gateway.storage import dynamo, schema
from gateway.storage.dynamo import Op
from gateway.storage.dynamo import Plan as Steps

TRANSACTION_ITEMS = 100  # DynamoDB's limit on one transaction
MARKER_TTL_SECONDS = 2 * 86400  # past the stream's 24 hours, no retry can bring a batch back
CONFLICT_RETRIES = 5


def of(sample: Sample, day: str, model: str | None, provider: str | None) -> dict[str, Any]:
    """What a settled request adds to the counters (its record keeps it; the stream brings it here)."""
    return {**sample.values(), "day": day, "model": model, "provider": provider}


def _targets(key_id: str, tally: dict[str, Any], shard: int) -> list[tuple[str, str, bool]]:
    """(pk, sk, expires) of every counter this tally adds to."""
    day = tally["day"]
    found = [
        (schema.key_pk(key_id), schema.day_sk(day), True),
        (schema.key_pk(key_id), schema.month_sk(day[:7]), False),
    ]
    if tally.get("model"):
        scopes = [schema.ALL_SCOPE, schema.model_scope(tally["model"])]
        if tally.get("provider"):
            scopes.append(schema.provider_scope(tally["provider"]))
        found += [(schema.stats_pk(scope, day, shard), schema.COUNTER, True) for scope in scopes]
    return found


def fold(records: Iterable[dict[str, Any]]) -> tuple[list[str], dict[tuple[str, str, bool], dict[str, Any]]]:
    """The event ids of the stream records that carry a tally, and their sums by counter item."""
    shard = random.randrange(counters.SHARDS)  # a batch adds to one shard of each shared counter
    events: list[str] = []
    sums: dict[tuple[str, str, bool], dict[str, Any]] = {}
    for record in records:
        image = (record.get("dynamodb") or {}).get("NewImage") or {}
        if record.get("eventName") != "INSERT" or "tally" not in image:
            continue
        item = dynamo.from_item(image)
        events.append(record["eventID"])
        tally = item["tally"]
        for target in _targets(schema.key_id_of(item["pk"]), tally, shard):
            total = sums.setdefault(target, {name: 0 for name in FIELDS})
            for name in FIELDS:
                total[name] += Decimal(tally.get(name, 0))
    return events, sums


def _add(target: tuple[str, str, bool], total: dict[str, Any], expires_at: int) -> dict[str, Any]:
    pk, sk, expires = target
    return {"Update": counters.add(pk, sk, total, expires_at if expires else None)}


def count_plan(records: list[dict[str, Any]], now: float) -> Steps[int]:
    """Add a batch of stream records to the counters, exactly once; how many transactions that took (0: there
    was nothing to count, or an earlier delivery of the batch counted it)."""
    events, sums = fold(records)
    if not events:
        return 0
    expires_at = int(now) + counters.COUNTER_TTL_DAYS * 86400
    updates = [_add(target, total, expires_at) for target, total in sums.items()]
    parts = [updates[i : i + TRANSACTION_ITEMS - 1] for i in range(0, len(updates), TRANSACTION_ITEMS - 1)]
    written = 0
    for index, part in enumerate(parts):
        marker = {
            "Put": {
                "TableName": settings().usage_table,
                "Item": {
                    **schema.counted_key(events[0], f"{events[-1]}#{index}"),
                    "expires_at": {"N": str(int(now) + MARKER_TTL_SECONDS)},
                },
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }
        for attempt in range(CONFLICT_RETRIES):
            try:
                yield Op("TransactWriteItems", {"TransactItems": [marker, *part]})
                written += 1
                break
            except dynamo.StoreError as exc:
                if exc.refused:
                    break  # counted by an earlier delivery of this batch
                conflict = any(r.get("Code") == "TransactionConflict" for r in exc.reasons)
                if not conflict or attempt == CONFLICT_RETRIES - 1:
                    raise  # the batch fails, and Lambda delivers it again
    return written


def count(records: list[dict[str, Any]], now: float) -> int:
    return dynamo.run_sync(count_plan(records, now))
