"""Every item of the usage table: its keys, and the layout of a reservation entry.

The README's "Data model" table describes the same items; this module is where code builds
their keys, so a key format is written once. Keys are returned in DynamoDB's typed form
(`{"S": ...}`), ready for the low-level client.

| item | pk | sk |
|---|---|---|
| a key's account | `KEY#<key_id>` | `ACCOUNT` |
| a key's usage of a day / a month | `KEY#<key_id>` | `DAY#<yyyy-mm-dd>` / `MONTH#<yyyy-mm>` |
| a generation record | `KEY#<key_id>` | `GEN#<generation id>` |
| a settlement's bare tally (no generation record) | `KEY#<key_id>` | `TALLY#<request id>` |
| a provider's health and windows | `PROVIDER#<provider id>` | `STATE` |
| a sharded gateway counter | `STATS#<scope>#<yyyy-mm-dd>#<shard>` | `TOTAL` |

Accounts with open reservations also carry `open_shard` and `open_at`, the keys of the sparse
index OPEN_INDEX, through which the sweeper finds them without a scan.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

ACCOUNT = "ACCOUNT"
STATE = "STATE"
COUNTER = "TOTAL"
OPEN_INDEX = "open-reservations"
OPEN_SHARDS = 16  # the index's partitions: accounts opening reservations spread over them


def _typed(pk: str, sk: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def key_pk(key_id: str) -> str:
    return f"KEY#{key_id}"


def account_key(key_id: str) -> dict[str, Any]:
    return _typed(key_pk(key_id), ACCOUNT)


def key_id_of(pk: str) -> str:
    return pk.removeprefix("KEY#")


def day_sk(day: str) -> str:
    return f"DAY#{day}"


def month_sk(month: str) -> str:
    return f"MONTH#{month}"


def usage_key(key_id: str, period: str) -> dict[str, Any]:
    """A key's counters of a day (`yyyy-mm-dd`) or a month (`yyyy-mm`)."""
    return _typed(key_pk(key_id), day_sk(period) if len(period) == 10 else month_sk(period))


GEN_PREFIX = "GEN#"


def generation_sk(generation_id: str) -> str:
    return f"{GEN_PREFIX}{generation_id}"


def tally_sk(request_id: str) -> str:
    return f"TALLY#{request_id}"


def generation_key(key_id: str, generation_id: str) -> dict[str, Any]:
    return _typed(key_pk(key_id), generation_sk(generation_id))


def provider_pk(provider_id: str) -> str:
    return f"PROVIDER#{provider_id}"


def provider_key(provider_id: str) -> dict[str, Any]:
    return _typed(provider_pk(provider_id), STATE)


def provider_id_of(pk: str) -> str:
    return pk.removeprefix("PROVIDER#")


ALL_SCOPE = "ALL"


def model_scope(model_id: str) -> str:
    return f"MODEL#{model_id}"


def provider_scope(provider_id: str) -> str:
    return f"PROVIDER#{provider_id}"


def stats_pk(scope: str, day: str, shard: int) -> str:
    """`scope` is `ALL`, `MODEL#<id>` or `PROVIDER#<id>`."""
    return f"STATS#{scope}#{day}#{shard:02d}"


def stats_key(scope: str, day: str, shard: int) -> dict[str, Any]:
    return _typed(stats_pk(scope, day, shard), COUNTER)


def stats_scope_of(pk: str) -> str:
    return pk.rsplit("#", 2)[0].removeprefix("STATS#")


def open_shard(key_id: str) -> str:
    return str(zlib.crc32(key_id.encode()) % OPEN_SHARDS)


@dataclass(frozen=True, slots=True)
class Reservation:
    """One admitted request's hold on its account, as the entry `reservations.<id>` stores it."""

    key_id: str
    request_id: str  # the gateway's own id for the request, never one a caller chose
    amount: Decimal  # credit held until settlement
    free: bool  # counted against the free-request quota instead of credit
    month: str  # the account month it was taken from, where its refund goes back
    tokens: int = 0  # counted in the key's minute window
    window: int = 0  # that minute (epoch seconds // 60)
    at: int = 0  # when it was taken (epoch seconds)
    cover: Decimal = Decimal(0)  # what a free request covers: anything it costs beyond is charged

    def entry(self) -> dict[str, Any]:
        return {
            "amount": self.amount,
            "free": self.free,
            "month": self.month,
            "tokens": self.tokens,
            "win": self.window,
            "at": self.at,
            "cover": self.cover,
        }

    @classmethod
    def of(cls, key_id: str, request_id: str, entry: dict[str, Any]) -> Reservation:
        return cls(
            key_id=key_id,
            request_id=request_id,
            amount=Decimal(entry["amount"]),
            free=bool(entry["free"]),
            month=str(entry["month"]),
            tokens=int(entry.get("tokens", 0)),
            window=int(entry.get("win", 0)),
            at=int(entry.get("at", 0)),
            cover=Decimal(entry.get("cover", 0)),
        )
