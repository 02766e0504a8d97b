"""When DynamoDB itself fails: admission answers a retryable 503, and settlement retries until billed."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from tests.support.keys import make_key
from tests.support.stack import Stack

THROTTLED = ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "UpdateItem")


def chat(stack: Stack, key: str) -> httpx.Response:
    return httpx.post(
        f"{stack.base_url}/chat/completions",
        json={"model": "fake-ok", "messages": [{"role": "user", "content": "hello store"}]},
        headers={"authorization": f"Bearer {key}"},
        timeout=15,
        trust_env=False,
    )


def test_a_failing_account_store_is_a_retryable_503(e2e: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.accounts import admission

    key = make_key()[0]

    async def throttled(*args: Any, **kwargs: Any) -> Any:
        raise THROTTLED

    monkeypatch.setattr(admission, "admit", throttled)
    refused = chat(e2e, key)
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "storage_unavailable"
    assert refused.headers["retry-after"] == "1" and refused.headers["x-request-id"]
    assert "x-should-retry" not in refused.headers  # the SDKs retry a 503 by themselves


def test_a_settlement_that_fails_once_is_retried_and_billed_once(e2e: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.accounts import account, settlement
    from gateway.stats import counters

    key, record = make_key(free_requests=0)  # a paid request, so there is a bill to lose
    real = settlement.settle
    failures = []

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        if not failures:
            failures.append(1)
            raise THROTTLED
        return await real(*args, **kwargs)

    monkeypatch.setattr(settlement, "settle", flaky)
    answer = chat(e2e, key)
    assert answer.status_code == 200, answer.text
    assert failures == [1]
    month = counters.read_key(record.key_id, account.month_of(time.time()))
    assert month["requests"] == 1
    assert str(month["cost"]) == answer.headers["x-gateway-cost"] and month["cost"] > 0
