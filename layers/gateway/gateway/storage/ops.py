"""What the gateway asks of DynamoDB, and how DynamoDB says no, whichever client carries it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.storage.codec import from_item

# The error codes botocore's standard retry mode retries (besides 5xx and transport failures).
THROTTLING = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)


@dataclass(frozen=True, slots=True)
class Op:
    """One DynamoDB call: its action (`UpdateItem`) and its JSON-protocol payload (typed attribute values)."""

    action: str
    payload: dict[str, Any]


class StoreError(Exception):
    """DynamoDB answered with an error (or, as StoreUnavailable, did not answer)."""

    def __init__(self, code: str, message: str = "", status: int = 400, body: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.status = status
        self.body = body or {}

    @property
    def reasons(self) -> list[dict[str, Any]]:
        return list(self.body.get("CancellationReasons") or [])

    @property
    def refused(self) -> bool:
        """A condition did not hold: of a single write, or of a transaction's first item (the guarded one)."""
        if self.code == "ConditionalCheckFailedException":
            return True
        reasons = self.reasons
        return (
            self.code == "TransactionCanceledException"
            and bool(reasons)
            and (reasons[0].get("Code") == "ConditionalCheckFailed")
        )

    @property
    def old(self) -> dict[str, Any] | None:
        """The item as it was when the condition failed (ALL_OLD), or None where there was none."""
        raw = self.body.get("Item")
        if raw is None and self.reasons:
            raw = self.reasons[0].get("Item")
        return from_item(raw) if raw is not None else None

    @property
    def retryable(self) -> bool:
        return self.status >= 500 or self.code in THROTTLING


class StoreUnavailable(StoreError):
    """No answer: the connection failed or timed out, or the store kept throttling until the retries ran out."""
