"""Generation records: one per admitted request, kept GENERATION_TTL_DAYS, readable only by its key.

A record lives in its key's partition (`KEY#<key_id>` / `GEN#<generation id>`), so reading
someone else's generation is impossible by construction. Generation ids start with the
time in milliseconds (hex), so a key's records sort by time and a day is a range query.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from typing import Any

from gateway.config import settings
from gateway.storage import dynamo, schema

PREFIX = "chatcmpl-"
ID_PATTERN = re.compile(rf"^{re.escape(PREFIX)}[0-9a-f]{{11,}}$")  # the prefix, then milliseconds in hex
MAX_ID_LENGTH = 200  # a sort key may hold 1 KB; nothing longer is ever a generation id


def new_id(now: float | None = None) -> str:
    return f"{PREFIX}{int((now or time.time()) * 1000):011x}{secrets.token_hex(10)}"


def ttl_days() -> int:
    return int(os.environ.get("GENERATION_TTL_DAYS", "30"))


TALLY_TTL_SECONDS = 2 * 86400  # a bare tally outlives the stream's 24 hours, then goes


def put_item(
    key_id: str, request_id: str, record: dict[str, Any] | None, tally: dict[str, Any], cost: Any, now: float
) -> dict[str, Any]:
    """A transaction item: the request's generation record with its cost and tally, or, for a settlement
    that has none (a release, a sweep), a bare tally the counters are built from all the same."""
    if record is not None:
        keys = {"pk": schema.key_pk(key_id), "sk": schema.generation_sk(record["id"])}
        item = {**keys, **record, "cost": cost, "tally": tally, "expires_at": int(now) + ttl_days() * 86400}
    else:
        keys = {"pk": schema.key_pk(key_id), "sk": schema.tally_sk(request_id)}
        item = {**keys, "tally": tally, "expires_at": int(now) + TALLY_TTL_SECONDS}
    return {"Put": {"TableName": settings().usage_table, "Item": dynamo.to_item(item)}}


def _public(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k not in ("pk", "sk", "tally", "counted")}


def get(key_id: str, generation_id: str) -> dict[str, Any] | None:
    item = (
        dynamo.client()
        .get_item(
            TableName=settings().usage_table,
            Key=schema.generation_key(key_id, generation_id),
        )
        .get("Item")
    )
    return _public(dynamo.from_item(item)) if item else None


def _bound(ts: float) -> str:
    return schema.generation_sk(f"{PREFIX}{int(ts * 1000):011x}")


def page(
    key_id: str, start: float, end: float, limit: int = 50, cursor: str | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """The key's generations between two times, newest first, `limit` at a time; returns the next cursor."""
    kwargs: dict[str, Any] = {
        "TableName": settings().usage_table,
        "KeyConditionExpression": "pk = :pk AND sk BETWEEN :lo AND :hi",
        "ExpressionAttributeValues": {
            ":pk": {"S": schema.key_pk(key_id)},
            ":lo": {"S": _bound(start)},
            ":hi": {"S": _bound(end) + "~"},
        },
        "ScanIndexForward": False,
        "Limit": limit,
    }
    if cursor:
        kwargs["ExclusiveStartKey"] = schema.generation_key(key_id, cursor)
    response = dynamo.client().query(**kwargs)
    items = [_public(dynamo.from_item(i)) for i in response["Items"]]
    last = response.get("LastEvaluatedKey")
    return items, last["sk"]["S"].removeprefix(schema.GEN_PREFIX) if last else None


def made_between(generation_id: str, start: float, end: float) -> bool:
    """Whether the id is one this gateway made between two times: a listing's cursor must be one of its own."""
    if len(generation_id) > MAX_ID_LENGTH or not ID_PATTERN.match(generation_id):
        return False
    return start * 1000 <= int(generation_id[len(PREFIX) :][:11], 16) < end * 1000
