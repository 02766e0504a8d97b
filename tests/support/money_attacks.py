"""What the money tests share: a gateway in front of a greedy upstream (tests/support/greedy_upstream.py),
keys with a given credit, parallel requests on any route (whole, streamed, or cut by the client),
and the invariant every vector must keep (`assert_money_held`).

Used by tests/e2e/test_money_attacks_e2e.py and tests/e2e/test_money_routes_e2e.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from tests.support.greedy_upstream import GreedyUpstream, Served, served_cost
from tests.support.keys import make_key
from tests.support.stack import Stack, applied, ensure_tables, reset_provider_health

SETTLE_TIMEOUT = 10.0
RICH = Decimal(100_000)  # a key that can pay for anything a vector sends


def forget_upstream_clients() -> None:
    """Drop the gateway's pooled upstream clients, so the next ones take the timeout now configured."""
    from gateway.providers import http

    clients = getattr(http, "_clients", None)
    if hasattr(clients, "clear"):
        clients.clear()


@dataclass
class Attack:
    stack: Stack
    upstream: GreedyUpstream

    @property
    def base_url(self) -> str:
        return self.stack.base_url


@contextmanager
def greedy_gateway(
    e2e_stack: Stack, folder: Path, catalog: dict[str, Any], base_url_variable: str, providers: Collection[str]
) -> Iterator[GreedyUpstream]:
    """The session's gateway in front of a greedy upstream serving `catalog` (whose providers read their
    base URL from `base_url_variable`), with that catalog added to the gateway's, while a module runs."""
    upstream = GreedyUpstream(catalog).start()
    path = folder / "greedy-catalog.json"
    path.write_text(json.dumps(catalog, indent=1))
    env = {
        **e2e_stack.env,
        "GATEWAY_CATALOG_EXTRA": e2e_stack.env["GATEWAY_CATALOG_EXTRA"] + os.pathsep + str(path),
        base_url_variable: f"{upstream.url}/v1",
        # Many requests share this one process with moto and the gateway: the suite's 1 s is too tight
        # (a test that wants a timeout lowers it for itself).
        "UPSTREAM_TIMEOUT_SECONDS": "20",
    }
    try:
        with applied(env):
            ensure_tables(e2e_stack)
            reset_provider_health(providers, everything=True)
            forget_upstream_clients()
            try:
                yield upstream
            finally:
                forget_upstream_clients()  # the modules after this one get clients with their own timeout
    finally:
        upstream.stop()


# --- keys and accounts ---------------------------------------------------------------------------


def new_key(credit: Decimal | int | str, name: str = "attack", **fields: Any) -> tuple[str, Any]:
    return make_key(name=name, monthly_credit=Decimal(credit), free_requests=0, **fields)


def plan_of(record: Any) -> Any:
    from gateway.accounts import plans

    return plans.effective(record.record)


def credit_of(record: Any) -> dict[str, Any]:
    """The account's credit view (balance, reserved, ...) and its open reservations."""
    from gateway.accounts import account

    state = account.read(record.key_id, plan_of(record))
    return {**account.credit_view(state), "reservations": state.get("reservations") or {}}


def settled(record: Any, timeout: float = SETTLE_TIMEOUT) -> dict[str, Any]:
    """The credit view once no reservation of the key is open (bounded wait)."""
    deadline = time.monotonic() + timeout
    while True:
        view = credit_of(record)
        if not view["reservations"] and not view["reserved"]:
            return view
        assert time.monotonic() < deadline, (
            f"the key still holds ${view['reserved']} in {len(view['reservations'])} open reservations "
            f"{timeout}s after its last request ended"
        )
        time.sleep(0.05)


def fresh_minute(margin: float = 8.0) -> None:
    """Start a test of a per-minute window early enough in a minute that it cannot straddle two."""
    into = time.time() % 60
    if into > 60 - margin:
        time.sleep(60 - into + 0.05)


# --- requests ------------------------------------------------------------------------------------


def tag(marker: str, i: int) -> str:
    return f"{marker}-{i:03d}."


def ask(model: str, text: str, **fields: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": f"{text} Answer at length."}], **fields}


@dataclass
class Answer:
    index: int
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None  # the whole answer or the error body
    events: list[dict[str, Any]] = field(default_factory=list)
    text: str = ""  # the streamed text the client received
    received_tokens: int = 0  # completion tokens the client received (words, as the greedy upstream writes them)
    cut: bool = False  # the client hung up mid-stream
    done: bool = False  # the stream ended with [DONE] (message_stop on /v1/messages)
    failure: str | None = None

    @property
    def error(self) -> dict[str, Any]:
        body = self.body if isinstance(self.body, dict) else {}
        error = body.get("error")
        return error if isinstance(error, dict) else {}


def streamed_text(event: dict[str, Any]) -> str:
    """The answer text an event carries: a chat chunk's deltas, or an Anthropic text_delta."""
    if event.get("type") == "content_block_delta":
        text = (event.get("delta") or {}).get("text")
        return text if isinstance(text, str) else ""
    pieces = []
    for choice in event.get("choices") or ():
        content = (choice.get("delta") or {}).get("content") if isinstance(choice, dict) else None
        if isinstance(content, str):
            pieces.append(content)
    return "".join(pieces)


def first_token(answer: Answer) -> bool:
    return answer.received_tokens > 0


def _parsed(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


async def _one(
    client: httpx.AsyncClient,
    index: int,
    path: str,
    key: str,
    body: dict[str, Any],
    headers: dict[str, str],
    cut: Callable[[Answer], bool] | None,
) -> Answer:
    """One request; a stream is read to its end, or until `cut` says the client hangs up."""
    sent = {"authorization": f"Bearer {key}", **headers}
    try:
        if not body.get("stream"):  # (a body for the unified API's /api/chat says which it wants)
            response = await client.post(path, json=body, headers=sent)
            return Answer(index, response.status_code, dict(response.headers), _parsed(response))
        async with client.stream("POST", path, json=body, headers=sent) as response:
            answer = Answer(index, response.status_code, dict(response.headers))
            if response.status_code != 200:
                await response.aread()
                answer.body = _parsed(response)
                return answer
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    answer.done = True
                    break
                event = json.loads(data)
                answer.events.append(event)
                text = streamed_text(event)
                answer.text += text
                answer.received_tokens += len(text.split())
                if event.get("type") == "message_stop":
                    answer.done = True
                    break
                if cut is not None and cut(answer):
                    answer.cut = True
                    break  # leaving the block closes the connection mid-stream
            return answer
    except httpx.HTTPError as exc:
        return Answer(index, 0, failure=f"{type(exc).__name__}: {exc}")


async def _many(
    base_url: str,
    key: str,
    bodies: list[dict[str, Any]],
    headers: dict[str, str],
    cut: Callable[[int], bool],
    path: str,
    enough: Callable[[Answer], bool],
) -> list[Answer]:
    limits = httpx.Limits(max_connections=len(bodies) + 10, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base_url, timeout=60, trust_env=False, limits=limits) as client:
        return list(
            await asyncio.gather(
                *(_one(client, i, path, key, b, headers, enough if cut(i) else None) for i, b in enumerate(bodies))
            )
        )


def burst(
    atk: Attack,
    key: str,
    bodies: list[dict[str, Any]],
    headers: dict[str, str] | None = None,
    cut: Callable[[int], bool] = lambda i: False,
    path: str = "/chat/completions",
    enough: Callable[[Answer], bool] = first_token,
) -> list[Answer]:
    """Send all bodies at once to `path` (under /v1, or a whole URL; one connection each); the answers, in order.

    The client hangs up the streams of the indexes `cut` names once `enough` of each has come.
    """
    return asyncio.run(_many(atk.base_url, key, bodies, headers or {}, cut, path, enough))


def one(
    atk: Attack, key: str, body: dict[str, Any], headers: dict[str, str] | None = None, path: str = "/chat/completions"
) -> Answer:
    return burst(atk, key, [body], headers, path=path)[0]


def statuses(answers: list[Answer]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for a in answers:
        counts[a.status] = counts.get(a.status, 0) + 1
    return dict(sorted(counts.items()))


def served_records(atk: Attack, marker: str) -> list[Served]:
    """What the upstream received for this marker, once every request of it has ended."""
    records = atk.upstream.find(marker)
    still_open = atk.upstream.wait_ended(records, SETTLE_TIMEOUT)
    assert not still_open, f"{len(still_open)} upstream requests still running {SETTLE_TIMEOUT}s after the burst"
    return records


def record_of(records: list[Served], marker: str) -> dict[int, Served]:
    """The upstream record of each request, by the index in its tag."""
    pattern = re.compile(re.escape(marker) + r"-(\d{3})\.")
    found: dict[int, Served] = {}
    for record in records:
        match = pattern.search(record.raw)
        if match:
            found[int(match.group(1))] = record
    return found


# --- the invariants ------------------------------------------------------------------------------


def money(value: Decimal) -> str:
    return f"{value:.6f}"


def assert_money_held(
    label: str,
    key_record: Any,
    credit: Decimal,
    records: list[Served],
    answers: list[Answer],
    floor: Decimal | None = None,
    expected_5xx: Collection[int] = (503,),
) -> dict[str, Any]:
    """Served never above the credit; the balance is the credit less exactly what was served.

    With `floor` (streams the client cut), the key must be charged at least `floor`: the prompt
    the upstream billed and every token the client received (tokens generated after the cut may
    never have reached the gateway, so exactness is not asked there).
    """
    view = settled(key_record)
    served = served_cost(records)
    charged = credit - view["balance"]
    admitted = sum(a.status == 200 for a in answers)
    where = (
        f"{len(records)} requests reached the upstream, {admitted} of {len(answers)} answered 200, "
        f"statuses {statuses(answers)}"
    )
    problems = []
    if served > credit:
        problems.append(f"upstream served ${money(served)} on a key with ${money(credit)} ({where})")
    if floor is None:
        if charged < served:
            problems.append(
                f"${money(served - charged)} of upstream usage was served and not charged "
                f"(charged ${money(charged)} for ${money(served)} served; {where})"
            )
        elif charged > served:
            problems.append(
                f"the key was charged ${money(charged)}, ${money(charged - served)} more than the "
                f"${money(served)} the upstream served ({where})"
            )
    elif charged < floor:
        problems.append(
            f"${money(floor - charged)} of what the upstream billed and the client received was not charged "
            f"(charged ${money(charged)}, at least ${money(floor)} due; {where})"
        )
    crashed = [a for a in answers if (a.status >= 500 and a.status not in expected_5xx) or a.failure]
    if crashed:
        problems.append(f"{len(crashed)} requests failed: {crashed[0].status} {crashed[0].failure or crashed[0].body}")
    assert not problems, f"{label}: " + "; ".join(problems)
    return view


def assert_served(answer: Answer, what: str) -> None:
    """A key with enough credit gets its answer (a whole stream, when streamed)."""
    assert answer.status == 200, f"{what}: a key with ${RICH} was refused: {answer.status} {answer.body}"
    if answer.events or answer.done:
        assert answer.done, f"{what}: the stream of a key with ${RICH} did not end with [DONE]"
