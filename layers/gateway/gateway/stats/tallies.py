"""Usage counters built from the usage table's stream: each settled request's tally, added up in batches.

Settlement writes two items (the account and the request's record, which carries its tally:
the billed sample, its day, model and provider); the counters every statistics view reads (the
key's day and month, and the day's gateway, model and provider counters) are derived here, by
the TallyFunction that the table's stream invokes with batches of new records (template.yaml
passes it only INSERTs that carry a tally). Locally, gateway-local's stream reader does the same
(gateway/local/streams.py).

Each record is counted exactly once, however the stream's records are batched and delivered again
(Lambda retries a failed batch; a new event source mapping may read the last 24 hours afresh): the
transaction that adds a group of records to the counters also marks each of those records
`counted`, on condition that it was not. Records already marked are left out before writing (one
consistent BatchGetItem), and one marked meanwhile by another delivery cancels the transaction,
which goes again without it.

A request costs its record's mark (2 write units, in the transaction) and its share of a group's
counter updates (a few dozen for up to a hundred records), instead of seven transactional writes.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from gateway.config import settings
from gateway.stats import counters
from gateway.stats.counters import FIELDS, Sample
from gateway.storage import dynamo, schema
from gateway.storage.dynamo import Op
from gateway.storage.dynamo import Plan as Steps

TRANSACTION_ITEMS = 100  # DynamoDB's limit on one transaction
CONFLICT_RETRIES = 5


def of(sample: Sample, day: str, model: str | None, provider: str | None) -> dict[str, Any]:
    """What a settled request adds to the counters (its record keeps it; the stream brings it here)."""
    return {**sample.values(), "day": day, "model": model, "provider": provider}


def _targets(key_id: str, tally: dict[str, Any], shard: int) -> list[tuple[str, str, bool]]:
    """(pk, sk, expires) of every counter this tally adds to. A charge with no model (a sweep, a release)
    still counts in the gateway's totals, so they add up to what was billed."""
    day = tally["day"]
    found = [
        (schema.key_pk(key_id), schema.day_sk(day), True),
        (schema.key_pk(key_id), schema.month_sk(day[:7]), False),
    ]
    scopes = [schema.ALL_SCOPE]
    if tally.get("model"):
        scopes.append(schema.model_scope(tally["model"]))
        if tally.get("provider"):
            scopes.append(schema.provider_scope(tally["provider"]))
    found += [(schema.stats_pk(scope, day, shard), schema.COUNTER, True) for scope in scopes]
    return found


@dataclass(frozen=True, slots=True)
class Tally:
    """One settled request's record as the stream brought it: where it is, and what it adds up to."""

    key: dict[str, Any]  # the record's item key, typed: where its `counted` mark goes
    key_id: str
    tally: dict[str, Any]


def tallies_of(records: Iterable[dict[str, Any]]) -> list[Tally]:
    """The new records that carry a tally (template.yaml's filter passes only those; locally all come)."""
    found: dict[tuple[str, str], Tally] = {}
    for record in records:
        image = (record.get("dynamodb") or {}).get("NewImage") or {}
        if record.get("eventName") != "INSERT" or "tally" not in image:
            continue
        where = (image["pk"]["S"], image["sk"]["S"])
        if where in found:  # a record delivered twice in one batch (at least once): one item, counted once
            continue
        item = dynamo.from_item(image)
        found[where] = Tally({"pk": image["pk"], "sk": image["sk"]}, schema.key_id_of(item["pk"]), item["tally"])
    return list(found.values())


def _sums(tallies: list[Tally], shard: int) -> dict[tuple[str, str, bool], dict[str, Any]]:
    sums: dict[tuple[str, str, bool], dict[str, Any]] = {}
    for one in tallies:
        for target in _targets(one.key_id, one.tally, shard):
            total = sums.setdefault(target, {name: 0 for name in FIELDS})
            for name in FIELDS:
                total[name] += Decimal(one.tally.get(name, 0))
    return sums


def _add(target: tuple[str, str, bool], total: dict[str, Any], expires_at: int) -> dict[str, Any]:
    pk, sk, expires = target
    return {"Update": counters.add(pk, sk, total, expires_at if expires else None)}


def _mark(one: Tally, now: float) -> dict[str, Any]:
    """The record's own guard: marked counted in the same transaction that adds it, and only if it was not."""
    return {
        "Update": {
            "TableName": settings().usage_table,
            "Key": one.key,
            "UpdateExpression": "SET counted = :now",
            "ConditionExpression": "attribute_exists(pk) AND attribute_not_exists(counted)",
            "ExpressionAttributeValues": {":now": {"N": str(int(now))}},
        }
    }


def _parts(tallies: list[Tally], shard: int) -> list[list[Tally]]:
    """The tallies in groups whose marks and counter updates fit one transaction."""
    parts: list[list[Tally]] = []
    part: list[Tally] = []
    targets: set[tuple[str, str, bool]] = set()
    for one in tallies:
        adds = set(_targets(one.key_id, one.tally, shard))
        if part and len(part) + 1 + len(targets | adds) > TRANSACTION_ITEMS:
            parts.append(part)
            part, targets = [], set()
        part.append(one)
        targets |= adds
    return [*parts, part] if part else parts


def _uncounted(tallies: list[Tally]) -> Steps[list[Tally]]:
    """Those whose records are not marked counted yet (read consistently, a hundred keys a call)."""
    table = settings().usage_table
    counted: set[tuple[str, str]] = set()
    for start in range(0, len(tallies), 100):
        keys = [one.key for one in tallies[start : start + 100]]
        pending: dict[str, Any] = {
            table: {"Keys": keys, "ConsistentRead": True, "ProjectionExpression": "pk, sk, counted"}
        }
        while pending:
            answer = yield Op("BatchGetItem", {"RequestItems": pending})
            for item in answer.get("Responses", {}).get(table, []):
                if "counted" in item:
                    counted.add((item["pk"]["S"], item["sk"]["S"]))
            pending = answer.get("UnprocessedKeys") or {}
    return [one for one in tallies if (one.key["pk"]["S"], one.key["sk"]["S"]) not in counted]


def count_plan(records: list[dict[str, Any]], now: float) -> Steps[int]:
    """Add the stream records' tallies to the counters, each exactly once however the records are batched
    and delivered again; how many transactions that took (0: nothing left to count)."""
    shard = random.randrange(counters.SHARDS)  # a batch adds to one shard of each shared counter
    tallies = yield from _uncounted(tallies_of(records))
    expires_at = int(now) + counters.COUNTER_TTL_DAYS * 86400
    written = 0
    for part in _parts(tallies, shard):
        for attempt in range(CONFLICT_RETRIES):
            if not part:
                break
            updates = [_add(target, total, expires_at) for target, total in _sums(part, shard).items()]
            try:
                yield Op("TransactWriteItems", {"TransactItems": [*(_mark(one, now) for one in part), *updates]})
                written += 1
                break
            except dynamo.StoreError as exc:
                reasons = exc.reasons
                done = {i for i, r in enumerate(reasons[: len(part)]) if r.get("Code") == "ConditionalCheckFailed"}
                if done:  # counted meanwhile by another delivery: the rest go again, without them
                    part = [one for i, one in enumerate(part) if i not in done]
                    continue
                conflict = any(r.get("Code") == "TransactionConflict" for r in reasons)
                if not conflict or attempt == CONFLICT_RETRIES - 1:
                    raise  # the batch fails, and Lambda delivers it again
    return written


def count(records: list[dict[str, Any]], now: float) -> int:
    return dynamo.run_sync(count_plan(records, now))
