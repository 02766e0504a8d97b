"""What several gateway instances share, shown with two gateway processes on one DynamoDB:
provider cooldowns and limits, and each key's credit, free requests and rate limit under 50
parallel requests. Upstream answers wait at a gate (the fake upstream's `gated`), so what is in
flight at once is exact."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.support.fake_upstream import PROMPT_TOKENS, FakeUpstream, answer_pieces
from tests.support.keys import make_key
from tests.support.processes import gateway_processes
from tests.support.stack import Stack

PARALLEL = 50


def catalog(gate: FakeUpstream) -> dict[str, Any]:
    def provider(prefix: str, **fields: Any) -> dict[str, Any]:
        return {"name": f"Gate {prefix}", "base_url": f"{gate.url}/v1", "key_required": False, **fields}

    def model(model_id: str, *offerings: tuple[str, str], price: tuple[str, str] = ("1", "2"), **fields: Any) -> dict:
        return {
            "id": model_id,
            "owned_by": "gate-lab",
            "pricing": {"input": price[0], "output": price[1]},
            "offerings": [{"provider": p, "model": m} for p, m in offerings],
            **fields,
        }

    return {
        "providers": {
            "gate-flaky": provider("flaky", cooldown_after=2, cooldown_seconds=60),
            # Long enough to outlast the health cache's 2 s with room to spare, short enough to wait out.
            "gate-blip": provider("blip", cooldown_after=1, cooldown_seconds=5),
            "gate-limited": provider("limited", limits={"rpm": 5}),
            "gate-paid": provider("paid"),
        },
        "models": [
            model("flaky-500", ("gate-flaky", "error-500")),
            model("blip-500", ("gate-blip", "error-500")),
            model("limited-ok", ("gate-limited", "gated")),
            model("paid-ok", ("gate-paid", "gated"), max_output_tokens=1000),
            model("free-ok", ("gate-paid", "gated"), price=("0", "0")),
        ],
    }


@pytest.fixture(scope="module")
def instances(e2e_env: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeUpstream, list[str]]]:
    gate = FakeUpstream().start()  # its gate is open until a test closes it
    folder = tmp_path_factory.mktemp("instances")
    path = folder / "gate-catalog.json"
    path.write_text(json.dumps(catalog(gate)))
    env = {**e2e_stack_env(e2e_env), "GATEWAY_CATALOG_EXTRA": str(path), "KEY_CACHE_SECONDS": "5"}
    env["UPSTREAM_TIMEOUT_SECONDS"] = "30"  # requests wait at the gate longer than the suite's 1 s
    try:
        with gateway_processes(env, [folder / "one.log", folder / "two.log"]) as urls:
            yield gate, urls
    finally:
        gate.stop()


def e2e_stack_env(stack: Stack) -> dict[str, str]:
    return {k: v for k, v in stack.env.items() if k != "GATEWAY_CATALOG_EXTRA"}


def post(url: str, key: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{url}/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=30, trust_env=False
    )


def ask(model: str, marker: str, **fields: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": f"hello {marker}"}], **fields}


def fresh_minute(margin: float = 8.0) -> None:
    """Start a test of a per-minute window early enough in a minute that it cannot straddle two."""
    into = time.time() % 60
    if into > 60 - margin:
        time.sleep(60 - into + 0.05)


def wait_for(condition: Any, timeout: float = 30.0, state: Any = lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"condition not met in time: {state()}"
        time.sleep(0.02)


def burst(urls: list[str], key: str, body: dict[str, Any], gate: FakeUpstream, arrivals: int) -> list[httpx.Response]:
    """PARALLEL requests spread over the instances, with the gate closed until the refusals are all back."""
    gate.gate.clear()
    marker = body["messages"][0]["content"]
    with ThreadPoolExecutor(PARALLEL) as pool:
        futures = [pool.submit(post, urls[i % len(urls)], key, body) for i in range(PARALLEL)]
        wait_for(
            lambda: sum(f.done() for f in futures) >= PARALLEL - arrivals and gate.count(marker) >= arrivals,
            state=lambda: (
                f"{sorted(f.result().status_code for f in futures if f.done())}, {gate.count(marker)} at the gate"
            ),
        )
        time.sleep(0.3)  # any request that was wrongly admitted has time to reach the gate
        assert gate.count(marker) == arrivals
        assert sum(f.done() for f in futures) == PARALLEL - arrivals
        gate.gate.set()
        return [f.result() for f in futures]


def test_a_cooldown_is_shared_by_every_instance(instances: tuple[FakeUpstream, list[str]], marker: str) -> None:
    gate, (one, two) = instances
    key = make_key()[0]
    for _ in range(2):  # the provider's threshold
        assert post(one, key, ask("flaky-500", marker)).status_code == 502
    assert gate.count(marker) == 2
    time.sleep(2.1)  # longer than an instance caches provider health
    refused = post(two, key, ask("flaky-500", marker))
    assert refused.status_code == 503, refused.text
    error = refused.json()["error"]
    assert error["code"] == "no_provider_available"
    assert 50 <= int(refused.headers["retry-after"]) <= 60
    assert error["retry_after"] == int(refused.headers["retry-after"])
    assert gate.count(marker) == 2  # the second instance never called the provider it knows to be cooling


def test_a_cooled_provider_is_probed_again_after_its_cooldown(
    instances: tuple[FakeUpstream, list[str]], marker: str
) -> None:
    gate, (one, two) = instances
    key = make_key()[0]
    assert post(one, key, ask("blip-500", marker)).status_code == 502
    time.sleep(2.1)
    cooling = post(two, key, ask("blip-500", marker))
    assert cooling.status_code == 503
    assert gate.count(marker) == 1
    time.sleep(int(cooling.headers["retry-after"]) + 0.5)  # the cooldown is over, as Retry-After said
    assert post(two, key, ask("blip-500", marker)).status_code == 502  # probed again, and still failing
    assert gate.count(marker) == 2


def test_a_model_fallback_list_skips_a_cooling_model(instances: tuple[FakeUpstream, list[str]], marker: str) -> None:
    _, (one, _) = instances
    key = make_key()[0]
    answer = post(one, key, ask("flaky-500", marker, models=["paid-ok"]))
    assert answer.status_code == 200, answer.text
    assert answer.json()["model"] == "paid-ok"
    assert answer.json()["provider"] == "gate-paid"


def test_provider_limits_hold_across_instances(instances: tuple[FakeUpstream, list[str]], marker: str) -> None:
    gate, urls = instances
    key = make_key()[0]
    fresh_minute()
    results = burst(urls, key, ask("limited-ok", marker), gate, arrivals=5)
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200] * 5 + [503] * (PARALLEL - 5)
    refused = next(r for r in results if r.status_code == 503)
    assert refused.json()["error"]["code"] == "no_provider_available"
    assert int(refused.headers["retry-after"]) >= 1


def test_credit_for_k_requests_admits_exactly_k(instances: tuple[FakeUpstream, list[str]], marker: str) -> None:
    import orjson

    from gateway.accounts import account, plans

    gate, urls = instances
    body = ask("paid-ok", marker, max_tokens=1000)
    # The prompt is bounded by the bytes sent plus the template allowance (gateway/chat/egress.py): at
    # most this, and at least nothing; the 2,000 of the output decide, so credit for 7 cannot cover 8.
    most = (Decimal(len(orjson.dumps(body)) + 100) * 1 + 1000 * 2) / Decimal(1_000_000)
    credit = most * 7
    assert credit < 8 * Decimal(1000 * 2) / Decimal(1_000_000)
    key, record = make_key(monthly_credit=credit, free_requests=0)
    results = burst(urls, key, body, gate, arrivals=7)
    assert sorted(r.status_code for r in results) == [200] * 7 + [402] * (PARALLEL - 7)
    refused = next(r for r in results if r.status_code == 402)
    assert refused.json()["error"]["code"] == "insufficient_quota"
    state = account.read(record.key_id, plans.effective(record.record))
    usage = PROMPT_TOKENS * 1 + len(answer_pieces(body)) * 2  # the fake upstream's, at the model's price
    charged = Decimal(usage) / Decimal(1_000_000)
    assert state["balance"] == credit - 7 * charged
    assert state["reservations"] == {}


def test_free_requests_hold_under_concurrency(instances: tuple[FakeUpstream, list[str]], marker: str) -> None:
    gate, urls = instances
    key = make_key(monthly_credit=0, free_requests=10)[0]
    results = burst(urls, key, ask("paid-ok", marker, max_tokens=100), gate, arrivals=10)
    assert sorted(r.status_code for r in results) == [200] * 10 + [402] * (PARALLEL - 10)
    assert all(r.json()["usage"]["cost"] == 0 for r in results if r.status_code == 200)


def test_requests_per_minute_hold_under_concurrency(instances: tuple[FakeUpstream, list[str]], marker: str) -> None:
    gate, urls = instances
    key = make_key(rpm=7)[0]
    fresh_minute()
    results = burst(urls, key, ask("free-ok", marker), gate, arrivals=7)
    assert sorted(r.status_code for r in results) == [200] * 7 + [429] * (PARALLEL - 7)
    refused = next(r for r in results if r.status_code == 429)
    assert refused.json()["error"]["type"] == "requests"
    assert refused.headers["x-ratelimit-limit-requests"] == "7"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
