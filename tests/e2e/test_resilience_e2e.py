"""When DynamoDB itself fails: nothing is held without being known, nothing served goes unbilled.

Admission retries its idempotent write until it knows the outcome (or answers a retryable 503
and releases, later, what may have landed); settlement retries until billed, and what the store
refuses for longer is written with the process's next request.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest

from gateway.storage.ops import StoreUnavailable
from tests.support.keys import make_key
from tests.support.stack import Stack

THROTTLED = StoreUnavailable("ThrottlingException", "Rate exceeded", 400)
CREDIT = Decimal(1000)


def chat(stack: Stack, key: str, text: str = "hello store") -> httpx.Response:
    return httpx.post(
        f"{stack.base_url}/chat/completions",
        json={"model": "fake-ok", "messages": [{"role": "user", "content": text}]},
        headers={"authorization": f"Bearer {key}"},
        timeout=30,
        trust_env=False,
    )


def account_of(record: Any) -> dict[str, Any]:
    from gateway.accounts import account, plans

    return account.read(record.key_id, plans.effective(record.record))


def month_of(record: Any) -> dict[str, Any]:
    from tests.support.kit import month_counters

    return month_counters(record.key_id)


def test_a_store_that_stays_away_at_admission_is_a_retryable_503(e2e: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.accounts import admission

    key, _ = make_key(free_requests=0)
    calls = []

    async def throttled(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        raise THROTTLED

    monkeypatch.setattr(admission, "admit", throttled)
    refused = chat(e2e, key)
    assert refused.status_code == 503, refused.text
    error = refused.json()["error"]
    assert error["code"] == "storage_unavailable" and "nothing was sent to a provider" in error["message"]
    assert refused.headers["retry-after"] == "1" and refused.headers["x-request-id"]
    assert "x-should-retry" not in refused.headers  # the SDKs retry a 503 by themselves
    assert len(calls) > 1  # tried again before giving up
    assert not e2e.fake.find("hello store")


def test_an_admission_that_landed_unseen_is_found_and_admitted_once(
    e2e: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write lands but its answer is lost: the retry of the same write sees it, and the request is served."""
    from gateway.accounts import admission

    key, record = make_key(free_requests=0)
    real = admission.admit
    lost = []

    async def answer_lost(*args: Any, **kwargs: Any) -> Any:
        landed = await real(*args, **kwargs)
        if not lost:
            lost.append(landed)
            raise THROTTLED
        return landed

    monkeypatch.setattr(admission, "admit", answer_lost)
    answer = chat(e2e, key)
    assert answer.status_code == 200, answer.text
    state = account_of(record)
    assert not state.get("reservations") and state["held"] == 0
    cost = Decimal(answer.headers["x-gateway-cost"])
    assert state["balance"] == CREDIT - cost and month_of(record)["requests"] == 1


def test_an_unresolved_admission_is_released_when_the_store_answers_again(
    e2e: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Landed, then the store goes away: a 503, and the hold it left is released (never charged) by the next request."""
    from gateway.accounts import admission, settlement

    key, record = make_key(free_requests=0)
    real = admission.admit
    landed = []

    async def gone_after_landing(*args: Any, **kwargs: Any) -> Any:
        if not landed:
            landed.append(await real(*args, **kwargs))
        raise THROTTLED

    monkeypatch.setattr(admission, "admit", gone_after_landing)
    assert chat(e2e, key).status_code == 503
    assert len(account_of(record)["reservations"]) == 1 and settlement.pending() >= 1
    monkeypatch.setattr(admission, "admit", real)
    assert chat(e2e, key, "hello again").status_code == 200
    state = account_of(record)
    assert not state.get("reservations") and state["held"] == 0 and settlement.pending() == 0
    assert month_of(record)["requests"] == 2  # the 503 counted as an error, its cost nothing
    assert state["balance"] == CREDIT - month_of(record)["cost"]


def test_a_settlement_that_fails_once_is_retried_and_billed_once(e2e: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.accounts import settlement

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
    month = month_of(record)
    assert month["requests"] == 1
    assert str(month["cost"]) == answer.headers["x-gateway-cost"] and month["cost"] > 0


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_settlement_the_store_refuses_for_long_is_billed_with_the_next_request(
    e2e: Stack, monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    """Served while the store is away: kept, not released unbilled, and written once the store is back."""
    from gateway.accounts import settlement
    from gateway.storage import dynamo

    key, record = make_key(free_requests=0)
    real = dynamo.send

    async def transactions_refused(op: dynamo.Op) -> Any:  # settlement's writes, as a store that went away
        if op.action == "TransactWriteItems":
            raise StoreUnavailable("InternalServerError", "gone", 500)
        return await real(op)

    monkeypatch.setattr(dynamo, "send", transactions_refused)
    body = {"model": "fake-ok", "messages": [{"role": "user", "content": "served unseen"}], "stream": stream}
    served = httpx.post(
        f"{e2e.base_url}/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=30
    )
    assert served.status_code == 200 and settlement.pending() == 1
    assert len(account_of(record)["reservations"]) == 1  # still held: nothing was released unbilled
    monkeypatch.setattr(dynamo, "send", real)
    assert chat(e2e, key, "and the next one").status_code == 200
    state = account_of(record)
    assert settlement.pending() == 0 and not state.get("reservations") and state["held"] == 0
    month = month_of(record)
    assert month["requests"] == 2 and month["cost"] > 0 and state["balance"] == CREDIT - month["cost"]


def test_a_caller_who_hangs_up_while_the_bill_is_written_is_billed_all_the_same(
    e2e: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stream's last write is under way (a slow store) when the caller hangs up. The request's task is
    cancelled with asyncio's own cancel, which no anyio shield stops: the bill, in a task of its own, lands."""
    import asyncio
    import json
    import socket
    import struct
    import time

    from gateway.storage import dynamo

    key, record = make_key(free_requests=0)
    real = dynamo.send
    settling = []

    async def slow_settlement(op: dynamo.Op) -> Any:
        if op.action == "TransactWriteItems":
            settling.append(time.monotonic())
            await asyncio.sleep(1.0)
        return await real(op)

    monkeypatch.setattr(dynamo, "send", slow_settlement)
    body = json.dumps(
        {"model": "fake-ok", "messages": [{"role": "user", "content": "hang up while billed"}], "stream": True}
    ).encode()
    host, port = e2e.gateway.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            f"POST /v1/chat/completions HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {key}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n".encode()
            + body
        )
        received = b""
        while b'"content"' not in received:
            received += sock.recv(65536)
        deadline = time.monotonic() + 5
        while not settling and time.monotonic() < deadline:
            time.sleep(0.01)
        assert settling, "the settlement never started"
        # Hang up at once (a reset, as a client that goes away does): the server learns it while the bill is written.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    time.sleep(1.5)  # the slow write lands meanwhile
    state = account_of(record)
    assert not state.get("reservations") and state["held"] == 0, state
    month = month_of(record)
    assert month["requests"] == 1 and month["cost"] > 0 and state["balance"] == CREDIT - month["cost"]
