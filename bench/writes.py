"""DynamoDB write units of the calls the gateway makes, from the sizes of the items they write.

On-demand DynamoDB bills a write one write request unit per started KB of the item (for an
update, the larger of the item before and after; a write refused by its condition is billed
too), and twice that inside a transaction. moto reports no real consumed capacity, so the units
are computed here from each call and its answer, the way DynamoDB computes them:
https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/read-write-operations.html
An update whose answer returns no item (settlement's account update) is billed at the size the
same item last had in an answer: the account item that admission's ALL_NEW returned.
"""

from __future__ import annotations

import math
import threading
from typing import Any

WRITES = ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem")


def _value_size(value: dict[str, Any]) -> int:
    ((kind, inner),) = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        digits = inner.lstrip("-").replace(".", "").strip("0") or "0"
        return (len(digits) + 1) // 2 + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode()) + 1 + _value_size(v) for k, v in inner.items())
    if kind == "L":
        return 3 + sum(1 + _value_size(v) for v in inner)
    return len(str(inner))


def item_size(item: dict[str, Any]) -> int:
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def units_of(size: int) -> int:
    return max(1, math.ceil(size / 1024))


class WriteUnits:
    """Sums the write units of every call it is shown; thread-safe (botocore calls run in worker threads)."""

    def __init__(self) -> None:
        self._total = 0.0
        self._sizes: dict[str, int] = {}  # an item's key -> its last known size
        self._lock = threading.Lock()
        self._seen: list[tuple[str, dict[str, Any], dict[str, Any] | None]] = []

    def note(self, action: str, payload: dict[str, Any], answer: dict[str, Any] | None) -> None:
        """Keep a call to count later (`total`), so the counting is not part of the CPU a request is measured at."""
        if action in WRITES:
            self._seen.append((action, payload, answer))

    @property
    def total(self) -> float:
        """Every unit so far: the calls noted since the last look are counted now, in order."""
        with self._lock:
            seen, self._seen = self._seen, []
        for call in seen:
            self.add(*call)
        return self._total

    @staticmethod
    def _key(table: str, key: dict[str, Any]) -> str:
        return f"{table}|{sorted((k, str(v)) for k, v in key.items())}"

    def _known(self, table: str, key: dict[str, Any], fallback: int = 0) -> int:
        return self._sizes.get(self._key(table, key), fallback)

    def _learn(self, table: str, key: dict[str, Any], item: dict[str, Any] | None) -> int:
        size = item_size(item) if item else 0
        if item:
            self._sizes[self._key(table, key)] = size
        return size

    def add(self, action: str, payload: dict[str, Any], answer: dict[str, Any] | None) -> float:
        """The units of one call, given its answer (or error body); added to the total."""
        if action not in WRITES:
            return 0.0
        answer = answer or {}
        with self._lock:
            units = self._units(action, payload, answer)
            self._total += units
        return units

    def _units(self, action: str, payload: dict[str, Any], answer: dict[str, Any]) -> float:
        if action == "PutItem":
            return units_of(item_size(payload["Item"]))
        if action in ("UpdateItem", "DeleteItem"):
            table, key = payload["TableName"], payload["Key"]
            shown = answer.get("Attributes") or answer.get("Item")  # ALL_NEW, or ALL_OLD of a refusal
            before = self._known(table, key)
            after = self._learn(table, key, shown) if shown else before
            return units_of(max(before, after))
        if action == "TransactWriteItems":
            total = 0
            for entry in payload["TransactItems"]:
                ((kind, body),) = entry.items()
                if kind == "Put":
                    total += units_of(item_size(body["Item"]))
                else:
                    total += units_of(self._known(body["TableName"], body["Key"]))
            return 2.0 * total
        return sum(  # BatchWriteItem
            units_of(item_size(request["PutRequest"]["Item"])) if "PutRequest" in request else 1
            for requests in payload["RequestItems"].values()
            for request in requests
        )


def tally_units(endpoint: str, tables: dict[str, str]) -> tuple[float, int]:
    """Count the emulator's stream into the usage counters, as TallyFunction does (its batches of up to 500),
    in this process; the write units that took, and the batches. A revision whose settlement wrote the
    counters itself leaves no tallies in the stream: nothing to count."""
    import os

    from gateway.caches import reset_caches
    from gateway.local import streams
    from gateway.local.dynamodb import FAKE_CREDENTIALS
    from gateway.storage import dynamo

    units = WriteUnits()
    before = dict(os.environ)
    # The emulator reads a stream of thousands of records slowly: a minute, not DynamoDB's 5 s, to answer.
    os.environ.update(
        {**FAKE_CREDENTIALS, **tables, "AWS_ENDPOINT_URL_DYNAMODB": endpoint, "DYNAMODB_READ_TIMEOUT_SECONDS": "60"}
    )
    reset_caches()
    real = dynamo.send_sync

    def counted(op: dynamo.Op) -> dict[str, Any]:
        answer: dict[str, Any] | None = None
        try:
            answer = real(op)
            return answer
        except dynamo.StoreError as exc:
            answer = exc.body
            raise
        finally:
            units.add(op.action, op.payload, answer)

    dynamo.send_sync = counted  # type: ignore[assignment]
    try:
        batches = streams.StreamReader().drain()
    finally:
        dynamo.send_sync = real  # type: ignore[assignment]
        os.environ.clear()
        os.environ.update(before)
        reset_caches()
    return units.total, batches
