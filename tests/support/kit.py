"""What the end-to-end tests read and wait for, written once: a user turn, a key's counters and
balance as settlement left them, and the events of a text/event-stream body.

The gateway's modules are imported inside the readers: they read settings when first imported,
and an end-to-end module applies the stack's environment only while it runs (tests/conftest.py).
"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

SETTLE_TIMEOUT = 5.0  # seconds a request's settlement may take after its answer ended


def user(text: str) -> list[dict[str, Any]]:
    """One user turn, as `messages` (chat completions and Anthropic's Messages alike)."""
    return [{"role": "user", "content": text}]


# --- a key's money and counters -------------------------------------------------------------------


def tallied() -> None:
    """Count the stream's new tallies into the usage counters, as TallyFunction does on AWS within a second."""
    from gateway.local import streams

    streams.drain()


def month_counters(key_id: str) -> dict[str, Any]:
    """The key's usage counters for this month, once the stream's new tallies are counted (as TallyFunction
    counts them on AWS, within a second)."""
    from gateway.accounts import account
    from gateway.stats import counters

    tallied()
    return counters.read_key(key_id, account.month_of(time.time()))


def account_state(record: Any) -> dict[str, Any]:
    """The key's account item (balance, open reservations, ...) under its effective plan."""
    from gateway.accounts import account, plans

    return account.read(record.key_id, plans.effective(record.record))


def balance(record: Any, settled: bool = False) -> Decimal:
    """The key's balance; with `settled`, only once nothing is reserved (fails at once otherwise)."""
    state = account_state(record)
    if settled:
        assert not state.get("reservations"), "a reservation is still open"
    return Decimal(state["balance"])


def wait_settled(record: Any, requests: int, timeout: float = SETTLE_TIMEOUT) -> dict[str, Any]:
    """The month's counters once `requests` requests are counted and no reservation is open."""
    deadline = time.monotonic() + timeout
    while True:
        counters = month_counters(record.key_id)
        if counters["requests"] >= requests and not account_state(record).get("reservations"):
            return counters
        assert time.monotonic() < deadline, f"not settled within {timeout}s: {counters}"
        time.sleep(0.05)


# --- text/event-stream bodies ---------------------------------------------------------------------


def sse_data(text: str) -> list[str]:
    """The `data:` payload of every line that has one, in order (`[DONE]` included)."""
    return [line[len("data: ") :] for line in text.splitlines() if line.startswith("data: ")]


def sse_names(text: str) -> list[str]:
    """The `event:` name of every line that has one, in order."""
    return [line[len("event: ") :] for line in text.splitlines() if line.startswith("event: ")]


def named_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    """(name, data) of each event of a stream whose every event is named after its data's `type`
    (Anthropic's Messages, OpenAI's Responses): exactly an `event:` line and a `data:` line each."""
    events = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        lines = block.split("\n")
        assert len(lines) == 2 and lines[0].startswith("event: ") and lines[1].startswith("data: "), block
        name, data = lines[0][len("event: ") :], json.loads(lines[1][len("data: ") :])
        assert data["type"] == name, block
        events.append((name, data))
    return events
