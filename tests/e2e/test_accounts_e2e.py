"""What a key's plan does to a request, end to end: 402, 403 and 429 in OpenAI's shape, and the bill
settled exactly once, whether the answer was whole, streamed, failed or abandoned by the client."""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from tests.support.fake_upstream import CACHED_TOKENS, PROMPT_TOKENS, FakeUpstream
from tests.support.kit import account_state, month_counters, user, wait_settled
from tests.support.openapi import check_stream, validate_error

FAKE_OK_PRICE = (Decimal("0.50"), Decimal("1.50"))  # the catalog's fake-ok price, USD per million tokens
MakeKey = Callable[..., tuple[str, Any]]


class As:
    """Requests with one key through the module's shared client."""

    def __init__(self, anon: httpx.Client, key: str) -> None:
        self.anon, self.headers = anon, {"authorization": f"Bearer {key}"}

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.anon.post(path, headers=self.headers, **kwargs)

    def stream(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.anon.stream(method, path, headers=self.headers, **kwargs)


def cost(prompt: int, completion: int) -> Decimal:
    return (FAKE_OK_PRICE[0] * prompt + FAKE_OK_PRICE[1] * completion) / Decimal(1_000_000)


# --- refusals --------------------------------------------------------------------------------


def test_no_credit_is_a_402(
    anon_http: httpx.Client,
    make_key: MakeKey,
    fake: FakeUpstream,
    marker: str,
    client_for: Callable[[str], openai.OpenAI],
) -> None:
    key, _ = make_key(name="broke", monthly_credit=Decimal(0), free_requests=0)
    http = As(anon_http, key)
    response = http.post("/chat/completions", json={"model": "fake-ok", "messages": user(marker)})
    assert response.status_code == 402, response.text
    body = response.json()
    validate_error(body, status=402)
    assert body["error"]["code"] == "insufficient_quota"
    assert response.headers["x-should-retry"] == "false"
    assert response.headers["x-request-id"]
    assert fake.find(marker) == [], "a refused request reached the upstream"
    # A free model still answers.
    free = http.post("/chat/completions", json={"model": "gateway-echo", "messages": user("free?")})
    assert free.status_code == 200, free.text

    client = client_for(key)
    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(model="fake-ok", messages=user("again"))
    assert type(raised.value) is openai.APIStatusError and raised.value.status_code == 402


def test_a_model_outside_the_plan_is_a_403(
    anon_http: httpx.Client, make_key: MakeKey, client_for: Callable[[str], openai.OpenAI]
) -> None:
    key, _ = make_key(name="echo only", allowed_models=["gateway-echo"])
    http = As(anon_http, key)
    response = http.post("/chat/completions", json={"model": "fake-ok", "messages": user("hi")})
    assert response.status_code == 403, response.text
    body = response.json()
    validate_error(body)  # the document declares no 403 for this operation; the body is still OpenAI's
    assert body["error"]["param"] == "model"
    assert response.headers["x-should-retry"] == "false"
    assert http.post("/chat/completions", json={"model": "echo", "messages": user("hi")}).status_code == 200
    client = client_for(key)
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="fake-ok", messages=user("hi"), stream=True)


def test_requests_per_minute_is_a_429_with_retry_after(
    anon_http: httpx.Client, make_key: MakeKey, client_for: Callable[[str], openai.OpenAI]
) -> None:
    left_in_minute = 60 - time.time() % 60
    if left_in_minute < 3:  # the window would turn over between the requests
        time.sleep(left_in_minute + 0.05)
    key, _ = make_key(name="slow lane", rpm=2)
    http = As(anon_http, key)
    for _ in range(2):
        ok = http.post("/chat/completions", json={"model": "gateway-echo", "messages": user("hi")})
        assert ok.status_code == 200, ok.text
    assert ok.headers["x-ratelimit-limit-requests"] == "2"
    assert ok.headers["x-ratelimit-remaining-requests"] == "0"
    response = http.post("/chat/completions", json={"model": "gateway-echo", "messages": user("hi")})
    assert response.status_code == 429, response.text
    body = response.json()
    validate_error(body, status=429)
    assert body["error"]["code"] == "rate_limit_exceeded"
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= 60
    assert int(response.headers["retry-after-ms"]) == retry_after * 1000
    assert response.headers.get("x-should-retry") != "false"
    client = client_for(key)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="gateway-echo", messages=user("hi"))


def test_a_request_no_minute_could_admit_is_a_400_that_clients_do_not_retry(
    anon_http: httpx.Client, make_key: MakeKey
) -> None:
    key, _ = make_key(name="small tpm", tpm=1000)
    http = As(anon_http, key)
    response = http.post(
        "/chat/completions", json={"model": "gateway-echo", "messages": user("hi"), "max_tokens": 5000}
    )
    assert response.status_code == 400, response.text
    validate_error(response.json(), status=400)
    assert response.json()["error"]["param"] == "max_tokens"
    assert response.headers["x-should-retry"] == "false"
    # Without a limit of its own, the caller gets what the window leaves room for, not a refusal.
    response = http.post("/chat/completions", json={"model": "gateway-echo", "messages": user("hi")})
    assert response.status_code == 200, response.text


# --- settlement ---------------------------------------------------------------------------------


def test_a_whole_answer_is_billed_once_at_the_upstream_s_usage(anon_http: httpx.Client, make_key: MakeKey) -> None:
    key, record = make_key(name="billing whole", free_requests=0)
    http = As(anon_http, key)
    response = http.post("/chat/completions", json={"model": "fake-ok", "messages": user("bill me")})
    assert response.status_code == 200, response.text
    usage = response.json()["usage"]
    assert usage["prompt_tokens"] == PROMPT_TOKENS
    expected = cost(usage["prompt_tokens"], usage["completion_tokens"])
    assert Decimal(response.headers["x-gateway-cost"]) == expected
    counters = month_counters(record.key_id)  # settled before the response completed: no waiting
    assert counters["requests"] == 1 and counters["errors"] == 0
    assert (counters["prompt_tokens"], counters["completion_tokens"]) == (PROMPT_TOKENS, usage["completion_tokens"])
    assert counters["cost"] == expected
    state = account_state(record)
    assert not state.get("reservations")
    assert Decimal(state["balance"]) == Decimal(1000) - expected


def test_a_stream_is_billed_once(anon_http: httpx.Client, make_key: MakeKey) -> None:
    key, record = make_key(name="billing stream", free_requests=0)
    http = As(anon_http, key)
    response = http.post(
        "/chat/completions", json={"model": "fake-ok", "messages": user("stream bill"), "stream": True}
    )
    chunks = check_stream(response.text, "fake-ok")
    usage = chunks[-1]["usage"]
    counters = month_counters(record.key_id)
    assert counters["requests"] == 1
    assert counters["completion_tokens"] == usage["completion_tokens"]
    assert counters["cost"] == cost(usage["prompt_tokens"], usage["completion_tokens"])


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_prompt_tokens_read_from_the_provider_s_cache_are_billed_at_the_cache_price(
    anon_http: httpx.Client, make_key: MakeKey, stream: bool
) -> None:
    """fake-cached: $1 / $2 a million, cache reads $0.10; the upstream read 8 of its 11 prompt tokens from cache."""
    key, record = make_key(name="billing cache", free_requests=0)
    body = {"model": "fake-cached", "messages": user("cache me"), "stream": stream}
    response = As(anon_http, key).post("/chat/completions", json=body)
    assert response.status_code == 200, response.text
    usage = check_stream(response.text, "fake-cached")[-1]["usage"] if stream else response.json()["usage"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == CACHED_TOKENS
    fresh = PROMPT_TOKENS - CACHED_TOKENS
    expected = (Decimal(fresh) + Decimal("0.1") * CACHED_TOKENS + 2 * usage["completion_tokens"]) / Decimal(1_000_000)
    assert Decimal(str(usage["cost"])) == expected
    assert wait_settled(record, 1)["cost"] == expected
    assert Decimal(account_state(record)["balance"]) == Decimal(1000) - expected


def test_a_failed_upstream_costs_nothing(anon_http: httpx.Client, make_key: MakeKey) -> None:
    key, record = make_key(name="billing failure", free_requests=0)
    http = As(anon_http, key)
    response = http.post("/chat/completions", json={"model": "fake-error-500", "messages": user("x")})
    assert response.status_code == 502
    counters = wait_settled(record, 1)
    assert counters["errors"] == 1 and counters["cost"] == 0
    assert Decimal(account_state(record)["balance"]) == Decimal(1000)


def test_a_cut_stream_bills_what_was_delivered(anon_http: httpx.Client, make_key: MakeKey) -> None:
    key, record = make_key(name="billing cut", free_requests=0)
    http = As(anon_http, key)
    response = http.post(
        "/chat/completions", json={"model": "fake-cut", "messages": user("one two three four"), "stream": True}
    )
    assert '"error"' in response.text
    counters = wait_settled(record, 1)
    assert counters["requests"] == 1 and counters["errors"] == 1
    assert counters["completion_tokens"] > 0


def test_a_client_hang_up_is_billed_exactly_once(
    anon_http: httpx.Client, make_key: MakeKey, fake: FakeUpstream, marker: str
) -> None:
    key, record = make_key(name="billing hang-up", free_requests=0)
    body = {"model": "fake-long", "messages": user(f"talk {marker}"), "stream": True}
    with As(anon_http, key).stream("POST", "/chat/completions", json=body) as response:
        assert response.status_code == 200
        for i, _ in enumerate(response.iter_lines()):
            if i >= 6:
                break
    assert fake.one(marker).wait_ended(3) == "disconnected"
    counters = wait_settled(record, 1)
    assert counters["requests"] == 1
    assert counters["completion_tokens"] > 0
    time.sleep(0.3)  # nothing may be counted a second time after the first settlement
    assert month_counters(record.key_id)["requests"] == 1
