"""API keys: generated with 256 random bits, stored only as their SHA-256, looked up with a short cache.

The keys table's partition key is the hash, so authenticating is one GetItem (or none, for a
key seen in the last few seconds). A revoked key therefore stops working within
KEY_CACHE_SECONDS on every instance.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.config import settings
from gateway.storage import dynamo

KEY_PATTERN = re.compile(r"^sk-[A-Za-z0-9_-]{32,128}$")
KEY_ID_INDEX = "key_id-index"


@dataclass(frozen=True, slots=True)
class ApiKey:
    key_hash: str
    key_id: str
    prefix: str
    owner: str
    name: str
    status: str
    created_at: str
    record: dict[str, Any]

    @property
    def active(self) -> bool:
        return self.status == "active"

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> ApiKey:
        return cls(
            key_hash=record["key_hash"],
            key_id=record["key_id"],
            prefix=record["prefix"],
            owner=record.get("owner", ""),
            name=record.get("name", ""),
            status=record.get("status", "active"),
            created_at=record.get("created_at", ""),
            record=record,
        )


def generate() -> str:
    return "sk-" + secrets.token_urlsafe(32)  # 256 bits


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def display_prefix(key: str) -> str:
    return f"{key[:7]}...{key[-4:]}"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def create(owner: str, name: str = "", **fields: Any) -> tuple[str, ApiKey]:
    """Store a new key and return it in full; this is the only time the key itself exists."""
    key = generate()
    record = {
        "key_hash": hash_key(key),
        "key_id": "key_" + secrets.token_hex(8),
        "prefix": display_prefix(key),
        "owner": owner,
        "name": name,
        "status": "active",
        "created_at": now_iso(),
        **fields,
    }
    dynamo.client().put_item(
        TableName=settings().keys_table,
        Item=dynamo.to_item(record),
        ConditionExpression="attribute_not_exists(key_hash)",
    )
    return key, ApiKey.from_record(record)


def get_by_id(key_id: str) -> ApiKey | None:
    found = dynamo.client().query(
        TableName=settings().keys_table,
        IndexName=KEY_ID_INDEX,
        KeyConditionExpression="key_id = :id",
        ExpressionAttributeValues={":id": {"S": key_id}},
    )["Items"]
    if not found:
        return None
    item = dynamo.client().get_item(TableName=settings().keys_table, Key={"key_hash": found[0]["key_hash"]})
    return ApiKey.from_record(dynamo.from_item(item["Item"])) if "Item" in item else None


def set_status(key_id: str, status: str) -> ApiKey | None:
    key = get_by_id(key_id)
    if key is None:
        return None
    dynamo.client().update_item(
        TableName=settings().keys_table,
        Key={"key_hash": {"S": key.key_hash}},
        UpdateExpression="SET #s = :s",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": {"S": status}},
    )
    return get_by_id(key_id)


def lookup(key_hash: str) -> ApiKey | None:
    item = dynamo.client().get_item(TableName=settings().keys_table, Key={"key_hash": {"S": key_hash}})
    return ApiKey.from_record(dynamo.from_item(item["Item"])) if "Item" in item else None


_cache: dict[str, tuple[float, ApiKey | None]] = {}
_CACHE_LIMIT = 10_000


async def authenticate(key_hash: str) -> ApiKey | None:
    """The key's record, from this process's cache when it was read in the last few seconds."""
    now = time.monotonic()
    hit = _cache.get(key_hash)
    if hit is not None and hit[0] > now:
        return hit[1]
    record = await dynamo.call(lookup, key_hash=key_hash)
    ttl = settings().key_cache_seconds
    if ttl > 0:
        if len(_cache) >= _CACHE_LIMIT:
            _cache.clear()  # bounded memory under a flood of distinct keys; refills in one read each
        _cache[key_hash] = (now + ttl, record)
    return record
