"""Money on every route and through every failure (issue 19), end to end.

The gateway runs as a real uvicorn server over moto's DynamoDB in front of
tests/support/greedy_upstream.py, which speaks OpenAI's chat completions and Anthropic's Messages
API on one server and bills as the most pessimistic honest provider would: every byte received is
a prompt token (media at their per-part figure), the output is exactly the limit sent, one-hour
cache writes at their own price, server tools at $10 a use, 4 tokens a character for a `dense`
model, and a `slow` model's whole answer in full however long its caller waited.

Each vector of the issue's table gets a key with credit for exactly three reservations of the
request it sends (the amount a first probe on a $0 key is refused for, "may cost up to $X"),
fires its requests in parallel (a few: three fit), and checks what the gateway promises:

- what the upstream served never costs more than the credit;
- once everything settled, the balance is the credit less what was served (below zero if a
  provider billed beyond the bound: debt, never written off), or, where the gateway cannot know
  what was served (a timeout, a cut stream), at least that;
- nothing is left reserved, and nothing is a 5xx but the 504 of a timeout.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.greedy_upstream import MILLION, SLOW_SECONDS, Served, served_cost
from tests.support.keys import make_key
from tests.support.money_attacks import (
    RICH,
    Answer,
    Attack,
    ask,
    assert_money_held,
    burst,
    credit_of,
    forget_upstream_clients,
    fresh_minute,
    greedy_gateway,
    money,
    new_key,
    one,
    plan_of,
    record_of,
    served_records,
    settled,
    statuses,
    tag,
)
from tests.support.stack import Stack, applied, reset_provider_health

PARALLEL = 6  # three fit the credit: twice as many try
PROVIDERS = ("rt-openai", "rt-openai-b", "rt-anthropic")
ALLOWANCE = {"request": 200, "message": 10}  # large, so that a bound is told from a reported count
PRICE = {"input": "1000", "output": "1000"}  # USD per million tokens: $0.001 a token
CACHED_PRICE = {**PRICE, "cache_write": "1250", "cache_write_1h": "2000"}
TIMEOUT = 1.0  # the gateway's upstream timeout in the timeout tests
SLOW = 2.5  # how long the slow upstream takes then
DOWN_SECONDS = 6.0  # how long the store refuses after the upstream served


def _model(model_id: str, upstream: str, provider: str = "rt-anthropic", **fields: Any) -> dict[str, Any]:
    return {
        "id": model_id,
        "owned_by": "routes-lab",
        "created": 1767225600,
        "context_length": 1_000_000,
        "max_output_tokens": 4096,
        "pricing": CACHED_PRICE if provider == "rt-anthropic" else PRICE,
        "offerings": [{"provider": provider, "model": upstream}],
        "supports_tools": True,
        "input_modalities": ["text"],
        "prompt_allowance": ALLOWANCE,
        **fields,
    }


def routes_catalog() -> dict[str, Any]:
    def provider(name: str, protocol: str = "openai") -> dict[str, Any]:
        return {"name": name, "protocol": protocol, "base_url_env": "ROUTES_GREEDY_BASE_URL", "key_required": False}

    return {
        "providers": {
            "rt-openai": provider("Greedy upstream, OpenAI's protocol"),
            "rt-openai-b": provider("Greedy upstream, OpenAI's protocol, second"),
            "rt-anthropic": provider("Greedy upstream, Anthropic's protocol", "anthropic"),
        },
        "models": [
            _model("rt-claude", "greedy-claude"),
            _model(
                "rt-claude-vision",
                "greedy-claude-vision",
                input_modalities=["text", "image", "file"],
                part_tokens={"image": 1000, "file": 3000},
            ),
            _model("rt-claude-no1h", "greedy-claude-no1h", pricing={**PRICE, "cache_write": "1250"}),
            _model("rt-claude-dense", "greedy-claude-dense"),
            _model("rt-gpt", "greedy-gpt", "rt-openai"),
            _model("rt-dense", "greedy-dense", "rt-openai"),
            _model("rt-slow", "greedy-slow", "rt-openai"),
            {
                **_model("rt-fallback", "greedy-slow-first", "rt-openai"),
                "offerings": [
                    {"provider": "rt-openai", "model": "greedy-slow-first"},
                    {"provider": "rt-openai-b", "model": "greedy-fast-second"},
                ],
            },
        ],
    }


@dataclass
class Routes(Attack):
    probe: str = ""  # a $0 key: what a request reserves is what its 402 says it may cost

    def path(self, route: str) -> str:
        if route == "api":
            return f"{self.stack.gateway.url}/api/chat"
        return {
            "chat": "/chat/completions",
            "messages": "/messages",
            "count": "/messages/count_tokens",
            "responses": "/responses",
        }[route]


@pytest.fixture(scope="module")
def routes(e2e_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Routes]:
    folder = Path(tmp_path_factory.mktemp("routes"))
    with greedy_gateway(e2e_stack, folder, routes_catalog(), "ROUTES_GREEDY_BASE_URL", PROVIDERS) as upstream:
        yield Routes(e2e_stack, upstream, probe=new_key(0, name="probe")[0])


@pytest.fixture
def rt(routes: Routes) -> Routes:
    reset_provider_health(PROVIDERS)
    routes.upstream.on_request = None
    routes.upstream.slow_seconds = SLOW_SECONDS
    return routes


# --- helpers -------------------------------------------------------------------------------------


def reservation(rt: Routes, route: str, body: dict[str, Any]) -> Decimal | None:
    """What the gateway reserves for this request: the amount a key with nothing is refused for."""
    answer = one(rt, rt.probe, body, path=rt.path(route))
    found = re.search(r"\$(\d+\.\d+)", str(answer.body))  # "may cost up to $X", whatever the error's shape
    return Decimal(found.group(1)) if answer.status == 402 and found else None


def three(rt: Routes, route: str, body: dict[str, Any], name: str) -> tuple[str, Any, Decimal]:
    """A key with credit for exactly three reservations of `body` ($1 if the gateway refuses it outright)."""
    amount = reservation(rt, route, body)
    credit = 3 * amount if amount is not None else Decimal(1)
    key, record = new_key(credit, name=name)
    return key, record, credit


def probe_text() -> str:
    """A text as long as a test's tags (`marker` is m and 12 hex digits), so that it reserves the same."""
    return tag(f"p{uuid.uuid4().hex[:12]}", 0)


def prompt(route: str, model: str, text: str, limit: int, **fields: Any) -> dict[str, Any]:
    """A plain request on a route: chat's (chat completions, /api/chat) or Anthropic's."""
    if route == "messages":
        content = f"{text} Answer at length."
        return {"model": model, "max_tokens": limit, "messages": [{"role": "user", "content": content}], **fields}
    return ask(model, text, max_tokens=limit, **fields)


def charged_of(record: Any, credit: Decimal) -> Decimal:
    return credit - settled(record)["balance"]


def param_of(answer: Answer) -> Any:
    """The parameter an error names: OpenAI's `error.param`, or the unified API's top-level `param`."""
    body = answer.body if isinstance(answer.body, dict) else {}
    return answer.error.get("param") or body.get("param")


def refused_as(answers: list[Answer], param: str) -> list[str]:
    """The answers that are not a 400 naming `param`."""
    return [
        f"{a.status} param={param_of(a)!r} {str(a.body)[:160]}"
        for a in answers
        if a.status != 400 or param_of(a) != param
    ]


# --- a. another protocol's content blocks ----------------------------------------------------------

FOREIGN_BLOCKS = {
    "image": {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
    "document": {"type": "document", "source": {"type": "url", "url": "https://example.com/report.pdf"}},
}


@pytest.mark.parametrize("block", sorted(FOREIGN_BLOCKS))
@pytest.mark.parametrize("model", ["rt-claude", "rt-claude-vision"])
@pytest.mark.parametrize("route", ["chat", "api"])
def test_anthropic_blocks_as_chat_content_parts_are_a_400(rt: Routes, marker: str, route: str, model: str, block: str):
    def body(text: str) -> dict[str, Any]:
        content = [{"type": "text", "text": f"{text} Describe all of these."}, *[FOREIGN_BLOCKS[block]] * 15]
        return {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 16, "stream": False}

    key, record, credit = three(rt, route, body(probe_text()), f"foreign {block}")
    answers = burst(rt, key, [body(tag(marker, i)) for i in range(PARALLEL)], path=rt.path(route))
    records = served_records(rt, marker)
    assert_money_held(f"15 Anthropic {block} blocks on {route} to {model}", record, credit, records, answers)
    wrong = refused_as(answers, "messages[0].content[1].type")
    assert not wrong, f"{block} blocks on {route} to {model} were not a 400 naming the part's type: {wrong[:2]}"
    assert not records, f"{len(records)} requests with Anthropic {block} blocks reached the upstream"


# --- b. server tools -------------------------------------------------------------------------------

WEB_SEARCH = {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}


@pytest.mark.parametrize("route", ["chat", "api"])
def test_a_server_tool_is_a_400(rt: Routes, marker: str, route: str) -> None:
    def body(text: str) -> dict[str, Any]:
        return ask("rt-claude", f"{text} Search the web.", tools=[WEB_SEARCH], max_tokens=16, stream=False)

    key, record, credit = three(rt, route, body(probe_text()), "server tool")
    answers = burst(rt, key, [body(tag(marker, i)) for i in range(PARALLEL)], path=rt.path(route))
    records = served_records(rt, marker)
    assert_money_held(f"web_search on {route}", record, credit, records, answers)
    wrong = refused_as(answers, "tools[0].type")
    assert not wrong, f"a web_search tool on {route} was not a 400 naming tools[0].type: {wrong[:2]}"
    assert not records, f"{len(records)} requests with a server tool reached the upstream (fees: $10 a search)"


# --- c. one-hour cache writes ----------------------------------------------------------------------

ONE_HOUR = {"type": "ephemeral", "ttl": "1h"}


def cached_body(route: str, model: str, text: str) -> dict[str, Any]:
    system = [{"type": "text", "text": "You answer at length. " * 40, "cache_control": ONE_HOUR}]
    user = [{"type": "text", "text": f"{text} Answer at length.", "cache_control": ONE_HOUR}]
    if route == "messages":
        return {"model": model, "max_tokens": 64, "system": system, "messages": [{"role": "user", "content": user}]}
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    return {"model": model, "messages": messages, "max_tokens": 64}


@pytest.mark.parametrize("model", ["rt-claude", "rt-claude-no1h"])
@pytest.mark.parametrize("route", ["messages", "chat"])
def test_one_hour_cache_writes_are_billed_at_their_price(rt: Routes, marker: str, route: str, model: str) -> None:
    key, record, credit = three(rt, route, cached_body(route, model, probe_text()), f"1h cache {model}")
    bodies = [cached_body(route, model, tag(marker, i)) for i in range(PARALLEL)]
    answers = burst(rt, key, bodies, path=rt.path(route))
    records = served_records(rt, marker)
    assert_money_held(f"cache_control ttl 1h on {route} to {model}", record, credit, records, answers)
    served = [a for a in answers if a.status == 200]
    assert served, f"no request with a one-hour cache_control was served: {statuses(answers)}"
    # With a one-hour price in the catalog the ttl goes through; without, it is dropped (5-minute writes).
    lifetime = "1h" if model == "rt-claude" else "5m"
    lifetimes = sorted({str(r.cache_ttl) for r in records})
    assert lifetimes == [lifetime], f"the upstream wrote the cache for {lifetimes}, expected only {lifetime}"
    by_index = record_of(records, marker)
    mispriced = [
        f"charged {a.headers.get('x-gateway-cost')} for ${by_index[a.index].cost}"
        for a in served
        if a.index in by_index and Decimal(a.headers.get("x-gateway-cost") or "-1") != by_index[a.index].cost
    ]
    assert not mispriced, f"answers were charged other than what the upstream billed: {mispriced[:3]}"


# --- d. an upstream slower than the timeout --------------------------------------------------------


@pytest.fixture
def short(rt: Routes) -> Iterator[Routes]:
    """The gateway's upstream timeout at TIMEOUT seconds, and a slow upstream that takes SLOW."""
    with applied({"UPSTREAM_TIMEOUT_SECONDS": str(TIMEOUT)}):
        forget_upstream_clients()
        reset_provider_health(PROVIDERS)
        rt.upstream.slow_seconds = SLOW
        try:
            yield rt
        finally:
            forget_upstream_clients()


def test_a_timed_out_attempt_is_charged_its_bound(short: Routes, marker: str) -> None:
    def body(text: str) -> dict[str, Any]:
        return ask("rt-slow", text, max_tokens=1000)

    amount = reservation(short, "chat", body(probe_text()))
    assert amount is not None, "a $0 key was not refused a request to rt-slow with a 402"
    credit = 3 * amount
    key, record = new_key(credit, name="timeout")
    answers = burst(short, key, [body(tag(marker, i)) for i in range(5)])
    records = served_records(short, marker)
    served = served_cost(records)
    assert_money_held("a whole answer slower than the timeout", record, credit, records, answers, served, (504,))
    timed_out = sum(a.status == 504 for a in answers)
    assert timed_out and set(statuses(answers)) <= {402, 504}, f"statuses {statuses(answers)}"
    charged = charged_of(record, credit)
    assert charged == timed_out * amount, (
        f"{timed_out} attempts timed out, each bound at ${money(amount)}, and the key was charged "
        f"${money(charged)} (the upstream billed ${money(served)} for {len(records)} requests)"
    )


def test_a_fallback_after_a_timeout_charges_both_attempts(short: Routes, marker: str) -> None:
    def body(text: str) -> dict[str, Any]:
        return ask("rt-fallback", text, max_tokens=1000)

    key, record, credit = three(short, "chat", body(probe_text()), "timeout fallback")
    answers = []
    for i in range(3):  # one after the other: the first fits both attempts, later ones may not
        answer = one(short, key, body(tag(marker, i)))
        answer.index = i
        answers.append(answer)
    records = served_records(short, marker)
    served = served_cost(records)
    assert_money_held("a fallback after a timeout", record, credit, records, answers, served, (504,))
    assert set(statuses(answers)) <= {200, 402, 504}, f"statuses {statuses(answers)}"
    assert answers[0].status == 200, f"the first fallback, which the key can pay both attempts of: {answers[0].body}"
    for a in answers:
        if a.status == 200:
            models = sorted(r.upstream_model for r in records if tag(marker, a.index) in r.raw)
            assert models == ["greedy-fast-second", "greedy-slow-first"], f"request {a.index} reached {models}"


# --- e. hang-ups on token-dense output ---------------------------------------------------------------


DENSE_LIMIT = 4000  # 1000 characters of 4 bytes (and 4 tokens) each


def whole_text(answer: Answer) -> bool:
    """The client has every byte of the answer's text: it hangs up before the usage comes."""
    return len(answer.text.encode()) >= DENSE_LIMIT


@pytest.mark.parametrize("route,model", [("chat", "rt-dense"), ("messages", "rt-claude-dense")])
def test_hang_ups_on_dense_output_are_charged_what_was_sent(rt: Routes, marker: str, route: str, model: str) -> None:
    def body(text: str) -> dict[str, Any]:
        return prompt(route, model, text, DENSE_LIMIT, stream=True)

    key, record, credit = three(rt, route, body(probe_text()), f"dense {route}")
    answers: list[Answer] = []
    for round_ in range(5):  # again and again, as long as the key is admitted
        batch = burst(
            rt,
            key,
            [body(tag(marker, 3 * round_ + j)) for j in range(3)],
            path=rt.path(route),
            enough=whole_text,
            cut=lambda i: True,
        )
        for a in batch:
            a.index += 3 * round_
        answers += batch
        settled(record)
        if not any(a.status == 200 for a in batch):
            break
    records = served_records(rt, marker)
    by_index = record_of(records, marker)
    floor = Decimal(0)  # the prompt billed and every byte of text the client received (4 tokens a character)
    for i, r in by_index.items():
        received = len(answers[i].text.encode())
        floor += (
            r.cost
            if r.state == "done"
            else r.prompt_cost + r.output_price * min(received, r.completion_tokens) / MILLION
        )
    label = f"{len(answers)} dense streams on {route}, cut once their text had come"
    assert_money_held(label, record, credit, records, answers, floor)


# --- f. JSON nested deeper than a serialiser goes --------------------------------------------------------


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


DEEP = "__deep__"
SCHEMA = {"type": "object", "properties": {"a": DEEP}}
NESTING_ROUTES = {  # route -> a body with the deep value where the route forwards it
    "chat": lambda text: ask("rt-gpt", text, max_tokens=16, x_custom={"deep": DEEP}),
    "api": lambda text: ask("rt-gpt", text, max_tokens=16, x_custom={"deep": DEEP}),
    "messages": lambda text: prompt("messages", "rt-claude", text, 16, tools=[{"name": "f", "input_schema": SCHEMA}]),
    "count": lambda text: {
        "model": "rt-claude",
        "messages": [{"role": "user", "content": text}],
        "tools": [{"name": "f", "input_schema": SCHEMA}],
    },
    "responses": lambda text: {
        "model": "rt-gpt",
        "input": text,
        "max_output_tokens": 16,
        "tools": [{"type": "function", "name": "f", "parameters": SCHEMA}],
    },
}


@pytest.mark.parametrize(
    "route,stream",
    [
        pytest.param(route, stream, id=f"{route}-{'stream' if stream else 'whole'}")
        for route in sorted(NESTING_ROUTES)
        for stream in (False, True)
        if not (stream and route == "count")  # count_tokens does not stream
    ],
)
def test_json_nested_too_deep_is_a_400_at_parse(rt: Routes, marker: str, route: str, stream: bool) -> None:
    key, record = new_key(RICH, name=f"nesting {route}")
    url = rt.path(route)
    wrong = []
    with httpx.Client(base_url=rt.base_url, timeout=30, trust_env=False) as client:
        for depth in (300, 1000):  # the whole body: a few levels more; orjson parses up to 1024
            body = NESTING_ROUTES[route](tag(marker, depth))
            if route != "count":
                body["stream"] = stream
            raw = json.dumps(body).replace(json.dumps(DEEP), nested(depth))
            headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
            response = client.post(url, content=raw, headers=headers)
            if response.status_code != 400:
                wrong.append(f"depth {depth}: {response.status_code} {response.text[:160]!r}")
    reached = rt.upstream.find(marker)
    settled(record)
    assert not wrong, f"deeply nested JSON on {route} ({'streamed' if stream else 'whole'}) was not a 400: {wrong}"
    assert not reached, f"{len(reached)} deeply nested requests on {route} reached the upstream"


# --- g. the store goes away at settlement ----------------------------------------------------------------


class StoreProxy:
    """A TCP proxy in front of moto's DynamoDB that can refuse every connection for a while, or let
    a number of admission writes (UpdateItem of `reservations`) land and lose their answers (the
    caller sees the connection drop)."""

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.refusing = False
        self.swallow = 0  # admission answers to lose
        self.loop = asyncio.new_event_loop()
        self.open: set[asyncio.StreamWriter] = set()
        sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.server = self.loop.run_until_complete(asyncio.start_server(self._serve, sock=sock))
        self.thread = threading.Thread(target=self.loop.run_forever, name="store-proxy", daemon=True)
        self.thread.start()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            return
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.open |= {writer, up_writer}
        request = bytearray()  # what the client sent since the last answer began

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter, outgoing: bool) -> None:
            while data := await source.read(65536):
                if outgoing:
                    request.extend(data)
                elif request:
                    admission = b"UpdateItem" in request and b"reservations" in request
                    request.clear()
                    if admission and self.swallow:
                        self.swallow -= 1
                        return  # the write landed; its answer is lost with the connection
                sink.write(data)
                await sink.drain()

        tasks = [
            asyncio.ensure_future(pipe(reader, up_writer, True)),
            asyncio.ensure_future(pipe(up_reader, writer, False)),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        except (ConnectionError, OSError):
            pass
        finally:
            for task in tasks:
                task.cancel()
            for w in (writer, up_writer):
                self.open.discard(w)
                w.transport.abort()

    def refuse_for(self, seconds: float) -> None:
        """Drop every open connection and refuse new ones for `seconds` (callable from any thread)."""

        def down() -> None:
            self.refusing = True
            for w in list(self.open):
                w.transport.abort()
            self.loop.call_later(seconds, setattr, self, "refusing", False)

        self.loop.call_soon_threadsafe(down)

    def stop(self) -> None:
        async def shutdown() -> None:
            self.server.close()
            for w in list(self.open):
                w.transport.abort()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def store(rt: Routes) -> Iterator[StoreProxy]:
    """The gateway (and these tests) reach DynamoDB through a StoreProxy while the test runs."""
    proxy = StoreProxy(rt.stack.env["AWS_ENDPOINT_URL_DYNAMODB"])
    try:
        with applied({"AWS_ENDPOINT_URL_DYNAMODB": proxy.url}):
            forget_upstream_clients()
            yield proxy
    finally:
        proxy.stop()
        forget_upstream_clients()


@pytest.mark.parametrize("retry", [20.0, 1.0], ids=["retried", "given-up"])
def test_a_settlement_the_store_refuses_for_a_while_is_not_lost(
    rt: Routes, store: StoreProxy, marker: str, retry: float
) -> None:
    """The store refuses from the moment the upstream has the request until DOWN_SECONDS later.

    With STORE_RETRY_SECONDS beyond that, settlement is retried until it lands: billed exactly. With
    less, what could not be written must still end charged: by a later request of this process, or
    by the sweeper, in full; never released unbilled.
    """
    key, record, credit = three(rt, "chat", ask("rt-gpt", probe_text(), max_tokens=500), "store away")

    def gone(served: Served) -> None:
        if marker in served.raw:
            store.refuse_for(DOWN_SECONDS)  # the upstream has the request: the store goes away until after it answers

    rt.upstream.on_request = gone
    with applied({"STORE_RETRY_SECONDS": str(retry)}):
        started = time.monotonic()
        answer = one(rt, key, ask("rt-gpt", tag(marker, 0), max_tokens=500))
        time.sleep(max(DOWN_SECONDS - (time.monotonic() - started), 0) + 0.2)  # the store is back now
        records = served_records(rt, marker)
        assert records, f"the request never reached the upstream: {answer.status} {answer.body}"
        label = f"the store refused for {DOWN_SECONDS}s after the upstream served (retrying for {retry}s)"
        if retry > DOWN_SECONDS:
            assert_money_held(label, record, credit, records, [answer])
        else:
            rich, _ = new_key(RICH, name="store back")
            after = one(rt, rich, ask("rt-gpt", "After the store came back.", max_tokens=1))  # the next request
            assert after.status == 200, f"a request after the store came back: {after.status} {after.body}"
            if credit_of(record)["reservations"]:
                from gateway.accounts import sweeper

                sweeper.sweep(now=time.time() + sweeper.DEFAULT_AGE_SECONDS + 60)
            assert_money_held(label, record, credit, records, [answer], floor=served_cost(records))
    assert answer.status == 200, f"a request the upstream served answered {answer.status}: {answer.body}"


def test_the_sweeper_charges_a_reservation_left_open_in_full(rt: Routes) -> None:
    """What settlement could not write is found later and charged the most it could cost, never released unbilled."""
    from gateway.accounts import admission, sweeper

    credit, amount = Decimal(10), Decimal("2.5")
    _, record = new_key(credit, name="left open")
    admitted = admission.admit_sync(record.key_id, f"gen-{uuid.uuid4().hex}", plan_of(record), amount, 100)
    assert credit_of(record)["reserved"] == amount, "the reservation was not recorded"
    sweeper.sweep(now=time.time() + sweeper.DEFAULT_AGE_SECONDS + 60)
    view = credit_of(record)
    assert not view["reservations"], f"the sweeper left {admitted.reservation.request_id} open"
    assert view["balance"] == credit - amount, (
        f"the sweeper released a reservation of ${amount} that may have been served: balance ${view['balance']} "
        f"of ${credit}, expected ${credit - amount}"
    )


# --- h. a DynamoDB timeout at admission -------------------------------------------------------------------


def test_an_admission_whose_answer_was_lost_leaves_nothing_held(rt: Routes, store: StoreProxy, marker: str) -> None:
    key, record, credit = three(rt, "chat", ask("rt-gpt", probe_text(), max_tokens=500), "admission lost")
    fresh_minute()
    answers = []
    for i in range(4):
        # The first is admitted as usual, so that the gateway's guess of the account's state is right and
        # each later admission's first write lands: botocore then tries it four times (three retries),
        # each answer is lost, and the gateway cannot tell that it was admitted.
        store.swallow = 4 if i else 0
        answer = one(rt, key, ask("rt-gpt", tag(marker, i), max_tokens=500))
        answer.index = i
        answers.append(answer)
        store.swallow = 0
    records = served_records(rt, marker)
    said = [str(a.error.get("message")) for a in answers if a.status == 503]
    try:
        assert_money_held("admissions whose answers were lost", record, credit, records, answers)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the 503s said {said}") from None
    assert set(statuses(answers)) <= {200, 402, 503}, f"statuses {statuses(answers)}"


# --- i. free requests --------------------------------------------------------------------------------------


def test_free_requests_cost_at_most_their_ceiling(rt: Routes, marker: str) -> None:
    fresh_minute()
    # The shipped free plan as it is: no credit, its free requests, its limits.
    key, record = make_key(name="free", plan="free", monthly_credit=None, rpm=None, tpm=None)
    plan = plan_of(record)
    bodies = [ask("rt-claude", tag(marker, i), **({"max_tokens": 4096} if i % 2 else {})) for i in range(10)]
    answers = burst(rt, key, bodies)
    records = served_records(rt, marker)
    view = settled(record)
    served = served_cost(records)
    ceiling = getattr(plan, "free_request_cost", None)
    crashed = [a for a in answers if a.status >= 500 or a.failure]
    assert not crashed, f"free requests failed: {crashed[0].status} {crashed[0].failure or crashed[0].body}"
    assert ceiling is not None, (
        f"the free plan states no free_request_cost; 10 free requests to rt-claude were served ${money(served)} "
        f"({statuses(answers)})"
    )
    assert served <= 10 * Decimal(str(ceiling)), (
        f"10 free requests were served ${money(served)}, more than 10 x ${ceiling} ({statuses(answers)})"
    )
    assert view["balance"] >= 0, f"a $0 key's free requests left it owing ${-view['balance']}"


# --- the smaller ones ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["chat", "messages"])
def test_a_cut_anthropic_stream_is_charged_the_input_it_reported(rt: Routes, marker: str, route: str) -> None:
    limit = 8
    key, record = new_key(RICH, name=f"cut anthropic {route}")
    body = prompt(route, "rt-claude", tag(marker, 0), limit, stream=True)
    answer = burst(rt, key, [body], path=rt.path(route), cut=lambda i: True)[0]
    assert answer.status == 200 and answer.cut, f"{answer.status} {answer.body}"
    (served,) = served_records(rt, marker)
    charged = charged_of(record, RICH)
    # message_start reported the input; at most the whole limit may have been generated before the cut
    low, high = served.prompt_cost, served.prompt_cost + served.output_price * limit / MILLION
    assert low <= charged <= high, (
        f"a stream cut after message_start reported {served.prompt_tokens} input tokens was charged "
        f"${money(charged)}, not between ${money(low)} and ${money(high)} (the reported input, and the limit)"
    )


def test_count_tokens_counts_against_the_request_rate(rt: Routes) -> None:
    rpm = 5
    fresh_minute()
    key, _ = new_key(RICH, name="count rpm", rpm=rpm)
    body = {"model": "rt-claude", "messages": [{"role": "user", "content": "Count me."}]}
    with httpx.Client(base_url=rt.base_url, timeout=15, trust_env=False) as client:
        codes = [
            client.post("/messages/count_tokens", json=body, headers={"x-api-key": key}).status_code
            for _ in range(rpm + 1)
        ]
    assert codes == [200] * rpm + [429], f"{rpm + 1} count_tokens calls on a key with {rpm} a minute: {codes}"


@pytest.mark.parametrize(
    "preferences,param",
    [({"only": ["nope"]}, "provider.only"), ({"max_price": {"prompt": 0}}, "provider.max_price")],
    ids=["only", "max_price"],
)
def test_preferences_no_provider_meets_are_a_400(rt: Routes, marker: str, preferences: dict, param: str) -> None:
    key, _ = new_key(RICH, name="preferences")
    answer = one(rt, key, ask("rt-gpt", tag(marker, 0), max_tokens=16, provider=preferences))
    assert answer.status == 400 and str(param_of(answer)).startswith(param), (
        f"provider {preferences} answered {answer.status} {answer.body}"
    )
    assert "retry-after" not in answer.headers, "a refusal no retry can change carries Retry-After"
    assert not rt.upstream.find(marker)


def test_a_responses_file_id_is_a_400(rt: Routes, marker: str) -> None:
    key, _ = new_key(RICH, name="file id")
    content = [
        {"type": "input_text", "text": f"{tag(marker, 0)} Summarize."},
        {"type": "input_file", "file_id": "file-abc123"},
    ]
    body = {"model": "rt-gpt", "input": [{"role": "user", "content": content}], "max_output_tokens": 16}
    answer = one(rt, key, body, path="/responses")
    assert answer.status == 400, f"input_file with a file_id answered {answer.status}: {answer.body}"
    assert "file_id" in str(answer.error.get("param")), f"the 400 names {answer.error.get('param')!r}"
    assert not rt.upstream.find(marker)
