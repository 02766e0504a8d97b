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

from gateway import caches
from gateway.config import settings
from gateway.storage import dynamo
from gateway.storage.singleflight import SingleFlight

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
        return self.status == "active" and not self.expired

    @property
    def admin(self) -> bool:
        """May read gateway-wide statistics; it is otherwise an ordinary key with its own plan."""
        return self.record.get("role") == "admin"

    @property
    def expired(self) -> bool:
        expires = self.record.get("expires_at")
        return bool(expires) and datetime.fromisoformat(expires) <= datetime.now(UTC)

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


def create(
    owner: str,
    name: str = "",
    plan: str | None = None,
    expires_at: str | None = None,
    admin: bool = False,
    **overrides: Any,
) -> tuple[str, ApiKey]:
    """Store a new key and open its account; the returned key is the only copy that will ever exist.

    `overrides` are per-key plan limits (rpm, tpm, free_requests, monthly_credit, allowed_models).
    """
    from gateway.accounts import account, plans

    plan = plan or plans.default_plan()
    record = {
        "plan": plan,
        "expires_at": expires_at,
        "role": "admin" if admin else None,
        **{k: v for k, v in overrides.items() if v is not None},
    }
    unknown = set(record) - {"plan", "expires_at", "role", *plans.OVERRIDABLE}
    if unknown:
        raise ValueError(f"unknown key fields: {', '.join(sorted(unknown))}")
    effective = plans.effective(record)  # fails early on an unknown plan
    key = generate()
    record |= {
        "key_hash": hash_key(key),
        "key_id": "key_" + secrets.token_hex(8),
        "prefix": display_prefix(key),
        "owner": owner,
        "name": name,
        "status": "active",
        "created_at": now_iso(),
    }
    dynamo.client().put_item(
        TableName=settings().keys_table,
        Item=dynamo.to_item(record),
        ConditionExpression="attribute_not_exists(key_hash)",
    )
    account.open_account(record["key_id"], effective)
    return key, ApiKey.from_record({k: v for k, v in record.items() if v is not None})


def update(key_id: str, **fields: Any) -> ApiKey | None:
    """Change fields of a key's record (status, plan, limits); None removes a field."""
    key = get_by_id(key_id)
    if key is None:
        return None
    sets = {k: v for k, v in fields.items() if v is not None}
    removes = [k for k, v in fields.items() if v is None]
    names = {f"#f{i}": k for i, k in enumerate(fields)}
    by_name = {k: n for n, k in names.items()}
    parts = []
    if sets:
        parts.append("SET " + ", ".join(f"{by_name[k]} = :v{i}" for i, k in enumerate(sets)))
    if removes:
        parts.append("REMOVE " + ", ".join(by_name[k] for k in removes))
    if not parts:
        return key
    kwargs: dict[str, Any] = {}
    if sets:
        kwargs["ExpressionAttributeValues"] = dynamo.to_item({f":v{i}": v for i, v in enumerate(sets.values())})
    dynamo.client().update_item(
        TableName=settings().keys_table,
        Key={"key_hash": {"S": key.key_hash}},
        UpdateExpression=" ".join(parts),
        ExpressionAttributeNames=names,
        **kwargs,
    )
    return get_by_id(key_id)


def list_all() -> list[ApiKey]:
    """Every key (an admin listing; a scan is fine off the request path)."""
    found: list[ApiKey] = []
    kwargs: dict[str, Any] = {"TableName": settings().keys_table}
    while True:
        page = dynamo.client().scan(**kwargs)
        found += [ApiKey.from_record(dynamo.from_item(i)) for i in page["Items"]]
        if "LastEvaluatedKey" not in page:
            return sorted(found, key=lambda k: k.created_at)
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


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
    return update(key_id, status=status)


def _lookup_op(key_hash: str) -> dynamo.Op:
    return dynamo.Op("GetItem", {"TableName": settings().keys_table, "Key": {"key_hash": {"S": key_hash}}})


def _record(answer: dict[str, Any]) -> ApiKey | None:
    return ApiKey.from_record(dynamo.from_item(answer["Item"])) if "Item" in answer else None


def lookup(key_hash: str) -> ApiKey | None:
    return _record(dynamo.send_sync(_lookup_op(key_hash)))


_cache: dict[str, tuple[float, ApiKey | None]] = {}
caches.register(_cache.clear, f"{__name__}._cache")
_flights = SingleFlight()
_CACHE_LIMIT = 10_000


async def authenticate(key_hash: str) -> ApiKey | None:
    """The key's record, from this process's cache when it was read in the last few seconds."""
    now = time.monotonic()
    hit = _cache.get(key_hash)
    if hit is not None and hit[0] > now:
        return hit[1]

    async def load() -> ApiKey | None:
        return _record(await dynamo.send(_lookup_op(key_hash)))

    record = await _flights.do(key_hash, load)
    ttl = settings().key_cache_seconds
    if ttl > 0:
        if len(_cache) >= _CACHE_LIMIT:
            _cache.clear()  # bounded memory under a flood of distinct keys; refills in one read each
        _cache[key_hash] = (now + ttl, record)
    return record
