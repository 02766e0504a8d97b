"""Money attacks, end to end: what a hostile caller can get out of the gateway beyond what its key pays for.

The gateway runs as a real uvicorn server over moto's DynamoDB (conftest's `e2e_stack`), in front
of tests/support/greedy_upstream.py: an upstream that bills every byte it receives as a prompt token
(media parts at their model's per-part figure), obeys `max_tokens` over `max_completion_tokens`,
generates exactly the limit it obeys (or 50,000 tokens when it gets none), and reports usage
honestly. Each vector fires PARALLEL concurrent requests and checks the gateway's central promise:

- what the upstream served, at catalog prices, never costs more than the key's credit;
- once every request has settled, the key's balance is its credit less exactly that cost
  (nothing served and not charged, nothing written off);
- a key with enough credit is still served.

The catalog below uses the contract of issue 11 (`prompt_allowance`, `part_tokens`,
provider `allow_fields`, pricing `tiers`); a gateway that does not know those fields ignores them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.greedy_upstream import MILLION, Served, output_limit, served_cost, served_tokens
from tests.support.money_attacks import (
    RICH,
    Answer,
    Attack,
    ask,
    assert_money_held,
    assert_served,
    burst,
    credit_of,
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
from tests.support.stack import Stack, reset_provider_health

PARALLEL = 50
PROVIDERS = ("atk-greedy", "atk-greedy-tiered")
ALLOWANCE = {"request": 20, "message": 10}
MAX_OUTPUT = 4096
# Fields that change what a provider charges or stores, and values a real client might send.
CHARGED_FIELDS: dict[str, Any] = {
    "service_tier": "priority",
    "store": True,
    "metadata": {"project": "attack", "run": "7"},
    "plugins": [{"id": "web", "max_results": 5}],
    "web_search_options": {},
    "prediction": {"type": "content", "content": "a predicted answer"},
    "audio": {"voice": "alloy", "format": "wav"},
    "modalities": ["text", "audio"],
}
# Fields that change nothing the provider charges: they must reach it untouched.
HARMLESS_FIELDS: dict[str, Any] = {
    "temperature": 0.3,
    "top_p": 0.9,
    "seed": 7,
    "user": "attacker-7",
}
# 40 KB of tool definition: a JSON schema with a long description (at $1000 per million, ~$40 of prompt).
BIG_TOOL = {
    "type": "function",
    "function": {
        "name": "lookup_everything",
        "description": ("Looks up everything about anything, thoroughly and at length. " * 700)[:40_000],
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string", "description": "What to look up."}},
            "required": ["query"],
        },
    },
}
TINY_PNG = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
PDF = "data:application/pdf;base64,JVBERi0xLjQKJcOkw7zDtsOfCg=="
WAV = "UklGRiQAAABXQVZFZm10IBAAAAABAAEARKwAAIhYAQACABAAZGF0YQAAAAA="


def _model(model_id: str, upstream: str, provider: str = "atk-greedy", **fields: Any) -> dict[str, Any]:
    return {
        "id": model_id,
        "owned_by": "attack-lab",
        "created": 1767225600,
        "context_length": 1_000_000,
        "max_output_tokens": MAX_OUTPUT,
        "pricing": {"input": "1000", "output": "1000"},
        "offerings": [{"provider": provider, "model": upstream}],
        "supports_tools": True,
        "input_modalities": ["text"],
        "prompt_allowance": ALLOWANCE,
        **fields,
    }


def attack_catalog() -> dict[str, Any]:
    def provider(name: str, **fields: Any) -> dict[str, Any]:
        return {"name": name, "protocol": "openai", "base_url_env": "GREEDY_BASE_URL", "key_required": False, **fields}

    return {
        "providers": {
            "atk-greedy": provider("Greedy upstream"),
            "atk-greedy-tiered": provider("Greedy upstream, priority tier allowed", allow_fields=["service_tier"]),
        },
        "models": [
            _model("atk-bytes", "greedy-bytes"),
            _model("atk-vision", "greedy-vision", input_modalities=["text", "image"], part_tokens={"image": 1000}),
            _model(
                "atk-omni",
                "greedy-omni",
                input_modalities=["text", "image", "file", "audio"],
                part_tokens={"image": 1000, "file": 3000, "audio": 2000},
            ),
            _model("atk-eos", "greedy-eos"),
            _model("atk-2x", "greedy-2x", pricing={"input": "100", "output": "100"}),
            _model(
                "atk-tiered",
                "greedy-tiered",
                provider="atk-greedy-tiered",
                pricing={"input": "1000", "output": "1000", "tiers": {"priority": {"input": "2000", "output": "2000"}}},
            ),
        ],
    }


@pytest.fixture(scope="module")
def attack(e2e_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Attack]:
    folder = Path(tmp_path_factory.mktemp("attack"))
    with greedy_gateway(e2e_stack, folder, attack_catalog(), "GREEDY_BASE_URL", PROVIDERS) as upstream:
        yield Attack(e2e_stack, upstream)


@pytest.fixture
def atk(attack: Attack) -> Attack:
    reset_provider_health(PROVIDERS)
    return attack


def big_tool_body(text: str, **fields: Any) -> dict[str, Any]:
    return ask("atk-bytes", text, tools=[BIG_TOOL], max_tokens=1, **fields)


def both_limits_body(text: str, **fields: Any) -> dict[str, Any]:
    return ask("atk-bytes", text, max_completion_tokens=1, max_tokens=2000, **fields)


# --- 1. a large tool definition --------------------------------------------------------------------


def test_a_large_tool_definition_is_reserved_for(atk: Attack, marker: str) -> None:
    credit = Decimal(80)
    key, record = new_key(credit, name="big tool")
    answers = burst(atk, key, [big_tool_body(tag(marker, i)) for i in range(PARALLEL)])
    records = served_records(atk, marker)
    assert_money_held("40 KB tools, max_tokens 1", record, credit, records, answers)

    rich, _ = new_key(RICH, name="big tool, rich")
    assert_served(one(atk, rich, big_tool_body(f"rich{uuid.uuid4().hex[:10]}")), "a 40 KB tool")


# --- 2. max_completion_tokens 1 with max_tokens 2000 --------------------------------------------------


def _limits_agree(records: list[Served]) -> list[str]:
    wrong = []
    for r in records:  # one limit, or two that agree: an upstream that obeys either gets the same
        sent = {r.body.get("max_tokens"), r.body.get("max_completion_tokens")} - {None}
        if len(sent) != 1:
            wrong.append(
                f"max_tokens={r.body.get('max_tokens')} max_completion_tokens={r.body.get('max_completion_tokens')}"
            )
    return wrong


def test_two_output_limits_reach_the_upstream_as_one(atk: Attack, marker: str) -> None:
    credit = Decimal(80)
    key, record = new_key(credit, name="two limits")
    answers = burst(atk, key, [both_limits_body(tag(marker, i)) for i in range(PARALLEL)])
    records = served_records(atk, marker)
    wrong = _limits_agree(records)
    assert_money_held("max_completion_tokens 1 with max_tokens 2000", record, credit, records, answers)
    assert not wrong, (
        f"{len(wrong)} of {len(records)} upstream requests got two different output limits, e.g. {wrong[0]} "
        "(the caller sent max_completion_tokens 1 and max_tokens 2000)"
    )

    rich, _ = new_key(RICH, name="two limits, rich")
    assert_served(one(atk, rich, both_limits_body(f"rich{uuid.uuid4().hex[:10]}")), "two output limits")


# --- 3. no output limit at all ----------------------------------------------------------------------


def test_a_request_without_a_limit_gets_one_upstream(atk: Attack, marker: str) -> None:
    credit = Decimal(80)
    key, record = new_key(credit, name="no limit")
    answers = burst(atk, key, [ask("atk-bytes", tag(marker, i), n=2) for i in range(PARALLEL)])
    records = served_records(atk, marker)
    limits = [output_limit(r.body) for r in records]
    unlimited = sum(limit is None for limit in limits)
    over = [limit for limit in limits if limit is not None and limit > MAX_OUTPUT]
    assert_money_held("no max_tokens, n 2", record, credit, records, answers)
    assert not unlimited, f"{unlimited} of {len(records)} upstream requests were sent no output limit at all"
    assert not over, f"upstream requests were sent output limits {sorted(set(over))} above the model's {MAX_OUTPUT}"
    both = [r for r in records if "max_completion_tokens" in r.body and "max_tokens" in r.body]
    assert not _limits_agree(both), f"two different output limits reached the upstream: {_limits_agree(both)[0]}"

    rich, _ = new_key(RICH, name="no limit, rich")
    assert_served(one(atk, rich, ask("atk-bytes", f"rich{uuid.uuid4().hex[:10]}", n=2)), "no output limit")


# --- 4. one client-chosen request id for every request ----------------------------------------------


SAME_ID = {"x-amzn-request-context": json.dumps({"requestId": "same"})}


def test_a_client_chosen_request_id_selects_no_reservation(atk: Attack, marker: str) -> None:
    credit = Decimal(5)  # each request serves ~$1.2: four fit
    key, record = new_key(credit, name="same id")
    bodies = [ask("atk-bytes", tag(marker, i), max_tokens=1000) for i in range(PARALLEL)]
    answers = burst(atk, key, bodies, headers=SAME_ID)
    records = served_records(atk, marker)
    cheapest = min((r.cost for r in records), default=Decimal(0))
    assert_money_held(
        f"{PARALLEL} requests with one x-amzn-request-context requestId "
        f"(each serving at least ${money(cheapest)}, so at most {int(credit / cheapest) if cheapest else '-'} fit)",
        record,
        credit,
        records,
        answers,
    )

    # A key that can pay for all of them is served for all of them, and charged for all of them.
    rich_marker = f"rich{uuid.uuid4().hex[:10]}"
    rich, rich_record = new_key(RICH, name="same id, rich")
    rich_answers = burst(
        atk, rich, [ask("atk-bytes", tag(rich_marker, i), max_tokens=1000) for i in range(10)], headers=SAME_ID
    )
    refused = [a for a in rich_answers if a.status != 200]
    assert not refused, f"a key with ${RICH} was refused {len(refused)} of 10 requests: {refused[0].body}"
    rich_records = served_records(atk, rich_marker)
    assert_money_held("10 requests with one requestId on a rich key", rich_record, RICH, rich_records, rich_answers)


# --- 5. images, files and audio -------------------------------------------------------------------


def image_parts(count: int) -> list[dict[str, Any]]:
    parts = []
    for i in range(count):
        url = TINY_PNG if i % 2 else f"http://127.0.0.1:9/images/{i}.png"
        parts.append({"type": "image_url", "image_url": {"url": url, "detail": "high"}})
    return parts


def file_part() -> dict[str, Any]:
    return {"type": "file", "file": {"filename": "report.pdf", "file_data": PDF}}


def audio_part() -> dict[str, Any]:
    return {"type": "input_audio", "input_audio": {"data": WAV, "format": "wav"}}


def media_body(model: str, text: str, parts: list[dict[str, Any]]) -> dict[str, Any]:
    content = [{"type": "text", "text": f"{text} Describe all of these."}, *parts]
    return {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 1}


MEDIA_ATTACKS = {
    # 20 images at 1000 tokens each: ~$20 a request
    "atk-vision": lambda: image_parts(20),
    # 4 images, 2 files, 3 audio clips: 4000 + 6000 + 6000 tokens, ~$16 a request
    "atk-omni": lambda: [*image_parts(4), file_part(), file_part(), audio_part(), audio_part(), audio_part()],
}


@pytest.mark.parametrize("model", sorted(MEDIA_ATTACKS))
def test_media_parts_are_reserved_at_their_per_part_bound(atk: Attack, marker: str, model: str) -> None:
    credit = Decimal(80)
    key, record = new_key(credit, name=f"media {model}")
    answers = burst(atk, key, [media_body(model, tag(marker, i), MEDIA_ATTACKS[model]()) for i in range(PARALLEL)])
    records = served_records(atk, marker)
    assert_money_held(f"media parts on {model}", record, credit, records, answers)

    rich, _ = new_key(RICH, name=f"media {model}, rich")
    body = media_body(model, f"rich{uuid.uuid4().hex[:10]}", MEDIA_ATTACKS[model]())
    assert_served(one(atk, rich, body), f"media parts on {model}")


@pytest.mark.parametrize("kind", ["file", "input_audio"])
def test_a_part_the_model_cannot_take_is_a_400(atk: Attack, marker: str, kind: str) -> None:
    key, _ = new_key(RICH, name=f"unsupported {kind}")
    part = file_part() if kind == "file" else audio_part()
    bodies = [media_body("atk-vision", tag(marker, i), [*image_parts(1), part]) for i in range(10)]
    answers = burst(atk, key, bodies)
    reached = atk.upstream.find(marker)
    wrong = [a for a in answers if a.status != 400]
    assert not wrong, (
        f"a {kind} part sent to atk-vision (input_modalities text, image) answered {statuses(answers)}, "
        f"and {len(reached)} of {len(bodies)} requests reached the upstream, which billed "
        f"${money(served_cost(reached))} for them"
    )
    params = {a.error.get("param") for a in answers}
    assert all(isinstance(p, str) and p.startswith("messages[") for p in params), (
        f"the 400 for a {kind} part names {params}, not the content part (messages[...])"
    )
    assert not reached, f"{len(reached)} refused requests with a {kind} part still reached the upstream"


# --- 6. tokens per minute -------------------------------------------------------------------------


def test_tokens_per_minute_count_an_estimate_of_everything_sent(atk: Attack, marker: str) -> None:
    tpm = 100_000
    fresh_minute()
    key, record = new_key(RICH, name="tpm burst", tpm=tpm)
    answers = burst(atk, key, [big_tool_body(tag(marker, i)) for i in range(PARALLEL)])
    records = served_records(atk, marker)
    counted = served_tokens(records)
    # The window counts an estimate of each prompt (its bytes at BYTES_PER_TOKEN), not the byte bound money
    # holds: this upstream counts a token a byte, the most any tokenizer can, so it may see up to that ratio more.
    from gateway.chat.egress import BYTES_PER_TOKEN

    assert counted <= tpm * BYTES_PER_TOKEN, (
        f"the upstream counted {counted:,} tokens in one minute on a key with {tpm:,} tokens a minute "
        f"({len(records)} of {PARALLEL} requests reached it, statuses {statuses(answers)})"
    )
    settled(record)

    # Settlement corrected the window to what the provider reported: past the limit, the rest of the minute waits.
    after = one(atk, key, ask("atk-eos", f"{marker}-after.", max_tokens=100))
    if counted > tpm:
        assert after.status == 429 and after.headers["retry-after"], (after.status, after.body)
    else:
        assert after.status == 200, f"an honest request after the burst was refused: {after.status} {after.body}"


def test_the_minute_window_is_corrected_to_actual_usage(atk: Attack, marker: str) -> None:
    """Honest requests ask for 4000 output tokens and get 5: the window must count the 5."""
    tpm = 100_000
    fresh_minute(4.0)
    key, _ = new_key(RICH, name="tpm honest", tpm=tpm)
    answers = []
    for i in range(10):
        answer = one(atk, key, ask("atk-eos", tag(marker, i), max_tokens=4000))
        assert answer.status == 200, f"honest request {i} was refused: {answer.status} {answer.body}"
        answers.append(answer)
    records = record_of(served_records(atk, marker), marker)
    assert sorted(records) == list(range(10))
    before_last = sum(records[i].tokens for i in range(9))
    last = records[9]
    # The last request's own bound, generously: every byte sent, the allowances, its whole limit, and 1000 more.
    last_bound = len(last.raw.encode()) + ALLOWANCE["request"] + 2 * ALLOWANCE["message"] + 4000 + 1000
    remaining = int(answers[-1].headers["x-ratelimit-remaining-tokens"])
    used = tpm - remaining
    assert used <= before_last + last_bound, (
        f"after 10 honest requests the window counts {used:,} tokens of {tpm:,}, but they used {before_last:,} "
        f"before the last, whose bound is under {last_bound:,}: the window keeps the reservation bounds "
        f"(x-ratelimit-remaining-tokens {remaining:,})"
    )


# --- 7. fields that change what a provider charges or stores ------------------------------------------


def passthrough_body(model: str, text: str, **fields: Any) -> dict[str, Any]:
    content = [{"type": "text", "text": f"{text} Answer at length.", "cache_control": {"type": "ephemeral"}}]
    message = {"role": "user", "content": content, "x_note": "kept"}
    # An unknown field too: a server's own extension may change what it bills (llama.cpp's n_predict).
    return {
        "model": model,
        "messages": [message],
        "max_tokens": 1000,
        "n_predict": 100_000,
        **HARMLESS_FIELDS,
        **fields,
    }


def test_charged_fields_do_not_reach_a_provider_that_does_not_allow_them(atk: Attack, marker: str) -> None:
    credit = Decimal(20)
    key, record = new_key(credit, name="charged fields")
    bodies = [passthrough_body("atk-bytes", tag(marker, i), **CHARGED_FIELDS) for i in range(PARALLEL)]
    answers = burst(atk, key, bodies)
    records = served_records(atk, marker)
    leaked = sorted({name for r in records for name in [*CHARGED_FIELDS, "n_predict"] if name in r.body})
    changed = sorted(
        {name for r in records for name, value in HARMLESS_FIELDS.items() if r.body.get(name) != value}
        | {
            "messages[0].x_note"
            for r in records
            if r.body["messages"][0].get("x_note") != "kept"
            or r.body["messages"][0]["content"][0].get("cache_control") != {"type": "ephemeral"}
        }
    )
    assert_money_held("charged fields to a provider without allow_fields", record, credit, records, answers)
    assert not leaked, (
        f"fields that change what a provider charges or stores reached a provider that allows none: {leaked} "
        f"(billed ${money(served_cost(r for r in records if r.tier))} at the priority price)"
    )
    assert not changed, f"fields that change nothing did not reach the upstream untouched: {changed}"

    rich, _ = new_key(RICH, name="charged fields, rich")
    body = passthrough_body("atk-bytes", f"rich{uuid.uuid4().hex[:10]}", **CHARGED_FIELDS)
    assert_served(one(atk, rich, body), "charged fields")


def test_an_allowed_priority_tier_is_billed_at_its_price(atk: Attack, marker: str) -> None:
    credit = Decimal(20)  # ~$2.6 a request at the priority price, ~$1.3 at the base price
    key, record = new_key(credit, name="priority")
    fields = {"service_tier": "priority", "store": True}
    answers = burst(atk, key, [passthrough_body("atk-tiered", tag(marker, i), **fields) for i in range(PARALLEL)])
    records = served_records(atk, marker)
    by_index = record_of(records, marker)
    not_priority = [r for r in records if r.body.get("service_tier") != "priority"]
    stored = [r for r in records if "store" in r.body]
    mispriced = []
    for a in answers:
        if a.status == 200 and a.index in by_index:
            cost = a.headers.get("x-gateway-cost") or (a.body.get("usage") or {}).get("cost")
            if cost is None or Decimal(str(cost)) != by_index[a.index].cost:
                mispriced.append(f"charged {cost} for ${by_index[a.index].cost} at the priority price")
    assert_money_held("service_tier priority on a provider that allows it", record, credit, records, answers)
    assert not not_priority, f"{len(not_priority)} requests lost the service_tier the provider allows"
    assert not stored, f"{len(stored)} requests carried `store` to a provider that allows only service_tier"
    assert not mispriced, f"{len(mispriced)} priority requests were billed at another price, e.g. {mispriced[0]}"

    # Without a tier the same model is billed at its base price; a rich key is served either way.
    rich, _ = new_key(RICH, name="priority, rich")
    rich_marker = f"rich{uuid.uuid4().hex[:10]}"
    plain = one(atk, rich, passthrough_body("atk-tiered", rich_marker))
    assert_served(plain, "no service tier")
    base = atk.upstream.find(rich_marker)[0]
    assert base.tier is None and Decimal(plain.headers["x-gateway-cost"]) == base.cost
    assert_served(one(atk, rich, passthrough_body("atk-tiered", f"rich{uuid.uuid4().hex[:10]}", **fields)), "priority")


# --- 8. debt --------------------------------------------------------------------------------------


def _shows_debt(data: Any, debt: Decimal) -> bool:
    """Somewhere in the document: a debt figure equal to `debt`, or a balance of -debt."""
    if isinstance(data, dict):
        for name, value in data.items():
            if isinstance(value, dict | list):
                if _shows_debt(value, debt):
                    return True
                continue
            try:
                number = Decimal(str(value))
            except (ArithmeticError, ValueError):
                continue
            if "debt" in name and number == debt:
                return True
            if name in ("balance", "limit_remaining") and number == -debt:
                return True
    if isinstance(data, list):
        return any(_shows_debt(v, debt) for v in data)
    return False


def test_usage_beyond_the_reservation_is_carried_as_debt(atk: Attack, marker: str) -> None:
    """The upstream reports twice what the gateway bounded; the difference is owed, never written off."""
    from gateway.accounts import account

    credit = Decimal(1)
    price = Decimal(100) / MILLION  # atk-2x, USD a token
    key, record = new_key(credit, name="debt")
    plan = plan_of(record)
    answers: list[Answer] = []
    shrink = Decimal("0.8")
    for i in range(40):
        balance = credit_of(record)["balance"]
        if balance < 0:
            break
        # A few small requests, then each as large as the balance seems to allow.
        pad = 0 if i < 3 else max(int(balance * shrink / price) - 400, 0)
        answer = one(atk, key, ask("atk-2x", tag(marker, i) + " " + "x" * pad, max_tokens=1))
        answers.append(answer)
        if answer.status == 402:
            if pad == 0 or shrink < Decimal("0.05"):
                break
            shrink /= 2
            continue
        assert answer.status == 200, f"request {i} answered {answer.status}: {answer.body}"
    records = served_records(atk, marker)
    view = settled(record)
    served = served_cost(records)
    balance = view["balance"]
    assert balance == credit - served, (
        f"the upstream served ${money(served)} on a key with ${money(credit)}, whose balance is ${money(balance)}: "
        f"${money(balance - (credit - served))} written off"
    )
    assert balance < 0, f"no debt after {len(answers)} requests on the 2x model: balance ${money(balance)}"
    debt = -balance

    refused_marker = f"refused{uuid.uuid4().hex[:10]}"
    refused = one(atk, key, ask("atk-2x", refused_marker, max_tokens=1))
    assert refused.status == 402, f"a key owing ${money(debt)} was answered {refused.status}: {refused.body}"
    assert not atk.upstream.find(refused_marker), "a request from a key in debt reached the upstream"

    with httpx.Client(base_url=atk.base_url, timeout=15, trust_env=False) as client:
        auth = {"authorization": f"Bearer {key}"}
        credits = client.get("/credits", headers=auth)
        info = client.get("/key", headers=auth)
    assert credits.status_code == 200 and info.status_code == 200, (credits.text, info.text)
    assert _shows_debt(credits.json(), debt), f"/v1/credits does not show the debt of ${debt}: {credits.text}"
    assert _shows_debt(info.json(), debt), f"/v1/key does not show the debt of ${debt}: {info.text}"

    top_up = debt + Decimal(1)
    account.top_up(record.key_id, plan, top_up)
    paid_marker = f"paid{uuid.uuid4().hex[:10]}"
    paid = one(atk, key, ask("atk-2x", paid_marker, max_tokens=1))
    assert paid.status == 200, f"a key topped up beyond its debt was refused: {paid.status} {paid.body}"
    after = settled(record)["balance"]
    expected = credit + top_up - served - served_cost(atk.upstream.find(paid_marker))
    assert after == expected, f"after the top-up the balance is ${after}, expected ${expected}"


# --- 9. streamed, and cut mid-stream --------------------------------------------------------------


STREAM_ATTACKS = {"big-tool": big_tool_body, "two-limits": both_limits_body}


@pytest.mark.parametrize("cut", [False, True], ids=["whole-stream", "cut-stream"])
@pytest.mark.parametrize("attack_name", sorted(STREAM_ATTACKS))
def test_streamed_attacks(atk: Attack, marker: str, attack_name: str, cut: bool) -> None:
    credit = Decimal(80)
    make_body = STREAM_ATTACKS[attack_name]
    key, record = new_key(credit, name=f"stream {attack_name}")
    bodies = [make_body(tag(marker, i), stream=True) for i in range(PARALLEL)]
    # Only one 40 KB request fits the credit at a time, and which one is admitted is a race: cut them all.
    every = 1 if attack_name == "big-tool" else 2
    answers = burst(atk, key, bodies, cut=(lambda i: cut and i % every == 0))
    records = served_records(atk, marker)
    floor = None
    if cut:
        # Due at least: every prompt the upstream billed, every token of an uncut stream, every token received.
        by_index = record_of(records, marker)
        floor = Decimal(0)
        for i, r in by_index.items():
            if answers[i].cut and r.state != "done":
                floor += r.prompt_cost + r.output_price * min(answers[i].received_tokens, r.completion_tokens) / MILLION
            else:
                floor += r.cost
        assert len(by_index) == len(records)
    label = f"streamed {attack_name}" + (f", 1 in {every} streams cut after their first token" if cut else "")
    assert_money_held(label, record, credit, records, answers, floor=floor)
    if attack_name == "two-limits":
        wrong = _limits_agree(records)
        assert not wrong, f"{len(wrong)} streamed requests got two different output limits, e.g. {wrong[0]}"
    unfinished = [a for a in answers if a.status == 200 and not a.cut and not a.done]
    assert not unfinished, f"{len(unfinished)} admitted streams ended without [DONE]"

    rich, _ = new_key(RICH, name=f"stream {attack_name}, rich")
    assert_served(one(atk, rich, make_body(f"rich{uuid.uuid4().hex[:10]}", stream=True)), f"streamed {attack_name}")
