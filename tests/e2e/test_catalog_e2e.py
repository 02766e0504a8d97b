"""Day one for an operator: retirement is data, costs sit beside prices, and the margin is counted exactly.

Against the real stack (uvicorn, moto) and the fake upstream, with a catalog of this module's own:
a model whose first offering retired yesterday (routing skips it and falls back), a model whose
every offering has retired (listed as unavailable, answered 404 `model_retired`, never sent), and
offerings with a stated cost, whose requests show revenue, provider cost and margin in the
gateway's statistics.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.keys import make_key
from tests.support.money import usd
from tests.support.stack import Stack, applied, reset_provider_health

YESTERDAY = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
NEXT_YEAR = (datetime.now(UTC).date() + timedelta(days=365)).isoformat()
PRICE = {"input": "2", "output": "6"}
COST = {"input": "1", "output": "4"}


def catalog() -> dict[str, Any]:
    def provider(name: str, env: str) -> dict[str, Any]:
        return {"name": name, "protocol": "openai", "base_url_env": env, "key_required": False}

    def offering(provider: str, model: str, **fields: Any) -> dict[str, Any]:
        return {"provider": provider, "model": model, "cost": COST, **fields}

    def model(model_id: str, *offerings: dict[str, Any]) -> dict[str, Any]:
        return {"id": model_id, "owned_by": "test", "context_length": 8192, "max_output_tokens": 64, "pricing": PRICE,
                "offerings": list(offerings)}  # fmt: skip

    return {
        "providers": {
            "cat-old": provider("Retired host", "FAKE_BASE_URL"),
            "cat-new": provider("Host", "FAKE2_BASE_URL"),
        },
        "models": [
            model(
                "cat-moved",
                offering("cat-old", "ok-retired", retirement_date=YESTERDAY),
                offering("cat-new", "ok", retirement_date=NEXT_YEAR, deprecation_date=YESTERDAY),
            ),
            {
                **model("cat-gone", offering("cat-old", "ok-gone", retirement_date=YESTERDAY)),
                "replaces": ["cat-ancient"],
            },
        ],
    }


@pytest.fixture(scope="module")
def stack(e2e_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    path = Path(tmp_path_factory.mktemp("catalog")) / "retiring.json"
    path.write_text(json.dumps(catalog()))
    env = {**e2e_stack.env, "GATEWAY_CATALOG_EXTRA": e2e_stack.env["GATEWAY_CATALOG_EXTRA"] + os.pathsep + str(path)}
    with applied(env):
        reset_provider_health(("cat-old", "cat-new"), everything=True)
        yield e2e_stack


def chat(stack: Stack, key: str, model: str, text: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 16}
    return httpx.post(
        f"{stack.base_url}/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=15
    )


def listed(stack: Stack, model: str) -> dict[str, Any]:
    return httpx.get(f"{stack.base_url}/models/{model}", timeout=10).json()


def test_an_offering_past_its_retirement_date_is_skipped(stack: Stack, marker: str) -> None:
    key, _ = make_key()
    answer = chat(stack, key, "cat-moved", marker)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-gateway-provider"] == "cat-new"
    assert [r.body["model"] for r in stack.fake.find(marker)] == ["ok"]  # the retired one was never called
    shown = listed(stack, "cat-moved")
    old, new = shown["providers"]
    assert (old["available"], old["retirement_date"]) == (False, YESTERDAY)
    assert (new["available"], new["deprecation_date"], new["retirement_date"]) == (True, YESTERDAY, NEXT_YEAR)
    assert shown["available"] is True and shown["expiration_date"] == NEXT_YEAR


def test_a_model_left_with_no_offering_is_unavailable_and_a_404_not_a_call(stack: Stack, marker: str) -> None:
    key, _ = make_key()
    for name in ("cat-gone", "cat-ancient"):  # its id, and the retired name it answers for
        answer = chat(stack, key, name, marker)
        assert answer.status_code == 404, answer.text
        error = answer.json()["error"]
        assert error["code"] == "model_retired" and YESTERDAY in error["message"] and error["param"] == "model"
    assert not stack.fake.find(marker)
    shown = listed(stack, "cat-gone")
    assert (
        shown["available"] is False and shown["expiration_date"] == YESTERDAY and shown["replaces"] == ["cat-ancient"]
    )


def test_the_margin_of_each_request_is_counted_exactly(stack: Stack, marker: str) -> None:
    key, _ = make_key(free_requests=0)  # a paid request: a free one has no revenue, and a margin below zero
    admin, _ = make_key(name="margins", admin=True)
    before = httpx.get(
        f"{stack.base_url}/stats", params={"scope": "gateway"}, headers={"authorization": f"Bearer {admin}"}
    ).json()
    answer = chat(stack, key, "cat-moved", marker)
    assert answer.status_code == 200, answer.text
    usage = answer.json()["usage"]
    prompt, completion = usage["prompt_tokens"], usage["completion_tokens"]
    revenue = (Decimal(PRICE["input"]) * prompt + Decimal(PRICE["output"]) * completion) / 1_000_000
    cost = (Decimal(COST["input"]) * prompt + Decimal(COST["output"]) * completion) / 1_000_000
    assert Decimal(answer.headers["x-gateway-cost"]) == revenue
    after = httpx.get(
        f"{stack.base_url}/stats", params={"scope": "gateway"}, headers={"authorization": f"Bearer {admin}"}
    ).json()
    model = next(m for m in after["models"] if m["id"] == "cat-moved")
    provider = next(p for p in after["providers"] if p["id"] == "cat-new")
    was = next(m for m in before["models"] if m["id"] == "cat-moved")
    assert usd(model["revenue"]) - usd(was["revenue"]) == revenue
    assert usd(model["provider_cost"]) - usd(was["provider_cost"]) == cost
    assert usd(model["margin"]) - usd(was["margin"]) == revenue - cost
    had = next(p for p in before["providers"] if p["id"] == "cat-new")
    assert usd(provider["margin"]) - usd(had["margin"]) == revenue - cost
    assert usd(after["today"]["margin"]) - usd(before["today"]["margin"]) == revenue - cost
    assert (
        "provider_cost"
        not in httpx.get(f"{stack.base_url}/stats", headers={"authorization": f"Bearer {key}"}).json()["today"]
    )
