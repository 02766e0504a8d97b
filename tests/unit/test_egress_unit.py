"""What goes upstream and the most it can bill (gateway/chat/egress.py), against the bundled catalog."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pytest

from gateway.catalog import read
from gateway.chat import egress
from gateway.config import BUNDLED_CATALOG
from gateway.errors import GatewayError
from gateway.routing.resolve import Candidate

CATALOG = read([BUNDLED_CATALOG])


def candidates(model_id: str, *providers: str, **provider_changes: Any) -> list[Candidate]:
    from dataclasses import replace

    model = CATALOG.models[model_id]
    found = []
    for offering in model.offerings:
        if providers and offering.provider not in providers:
            continue
        provider = replace(CATALOG.providers[offering.provider], **provider_changes)
        found.append(Candidate(model, provider, offering, adapter=None))  # type: ignore[arg-type]
    return found


def body(**fields: Any) -> dict[str, Any]:
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], **fields}


def test_the_prompt_bound_counts_every_byte_sent_tools_included() -> None:
    tool = {"type": "function", "function": {"name": "big", "description": "x" * 40_000, "parameters": {}}}
    sent = body(tools=[tool], tool_choice="required", response_format={"type": "json_object"}, max_tokens=1)
    [offer] = egress.offers(sent, candidates("gpt-4o", "openai"), 1, stream=False)
    size = len(orjson.dumps(offer.body))
    assert offer.prompt == size + 32 + 8 * 2  # the bytes, the request allowance, one message and one tool
    assert offer.prompt > 40_000 and offer.output == 1


def test_media_parts_count_their_model_s_figure_and_a_model_that_cannot_take_them_is_refused() -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 10_000}}
    sent = body(messages=[{"role": "user", "content": [{"type": "text", "text": "look"}, image, image]}])
    [offer] = egress.offers(sent, candidates("gpt-4o", "openai"), 10, stream=False)
    without = len(orjson.dumps(offer.body)) - 2 * len(orjson.dumps(image))
    assert offer.prompt == without + 2 * 1445 + 32 + 8  # two images at gpt-4o's most, not their bytes
    for part in (
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,AAAA", "filename": "a.pdf"}},
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
    ):
        sent = body(messages=[{"role": "user", "content": [{"type": "text", "text": "hear"}, part]}])
        with pytest.raises(GatewayError) as refused:
            egress.offers(sent, candidates("gpt-4o"), 10, stream=False)
        assert refused.value.status == 400 and refused.value.param == "messages[0].content[1]"


def test_nothing_counts_above_the_context_length() -> None:
    sent = body(messages=[{"role": "user", "content": "y" * 300_000}])
    [offer] = egress.offers(sent, candidates("gpt-4o", "openai"), 10, stream=False)
    assert offer.prompt == CATALOG.models["gpt-4o"].context_length


def test_one_limit_goes_upstream_in_the_provider_s_field_and_a_missing_limit_is_sent() -> None:
    sent = body(max_completion_tokens=1, max_tokens=2000, n=3)
    offers = egress.offers(sent, candidates("gpt-4o"), 1, stream=False)
    for offer in offers:
        field = offer.candidate.provider.output_limit_field  # one limit, in the field the provider obeys
        assert offer.body[field] == 1 and {"max_tokens", "max_completion_tokens"} & set(offer.body) == {field}
        assert offer.output == 3  # one token for each of three choices
    by_provider = {o.candidate.provider.id: o for o in egress.offers(body(), candidates("gpt-4o"), None, False)}
    openai = by_provider["openai"].body
    assert openai["max_completion_tokens"] == 16384 and "max_tokens" not in openai
    assert by_provider["openrouter"].body["max_tokens"] == 16384
    capped = egress.offers(body(max_tokens=10**6), candidates("gpt-4o", "openai"), 10**6, False)
    assert capped[0].body["max_completion_tokens"] == capped[0].output == 16384  # never more than the model gives


@pytest.mark.parametrize("limit", [1, 9, 10, 99, 4096, 8192, 10**6])
@pytest.mark.parametrize(
    ("model_id", "fields"),
    [
        ("gpt-4o", {}),
        ("gpt-4o", {"max_tokens": 500, "n": 2}),
        ("claude-sonnet-5-5", {"max_completion_tokens": 7, "stream": True}),
        ("gpt-4o", {"messages": [{"role": "user", "content": "x" * 200_000}]}),  # capped at the context length
    ],
)
def test_a_lowered_limit_is_the_offer_built_with_it(model_id: str, fields: dict[str, Any], limit: int) -> None:
    """Admission lowers an offer's limit in place; the body and every bound equal building it again."""
    sent, found = body(model=model_id, **fields), candidates(model_id)
    for stream in (False, True):
        built = egress.offers(sent, found, None, stream)
        assert [o.limited(limit) for o in built] == egress.offers(sent, found, limit, stream)


def test_fields_that_change_the_bill_pass_only_where_allowed_and_priced() -> None:
    charged = {
        "service_tier": "priority",
        "store": True,
        "metadata": {"a": "b"},
        "plugins": [{"id": "web"}],
        "web_search_options": {},
    }
    sent = body(**charged, temperature=0.3, x_custom={"k": 1}, models=["gpt-4o-mini"], provider={"sort": "price"})
    [offer] = egress.offers(sent, candidates("gpt-4o", "openai"), 5, stream=False)
    assert not set(charged) & set(offer.body)
    assert offer.body["temperature"] == 0.3 and "x_custom" not in offer.body  # an unknown field: dropped
    assert "models" not in offer.body and "provider" not in offer.body
    [allowed] = egress.offers(sent, candidates("gpt-4o", "openai", allow_fields=frozenset({"x_custom"})), 5, False)
    assert allowed.body["x_custom"] == {"k": 1}  # where the operator lets it through
    assert offer.price == CATALOG.models["gpt-4o"].offerings[0].price

    from dataclasses import replace

    priority = egress.Price(Decimal("4.25"), Decimal(17))
    [plain] = candidates("gpt-4o", "openai", allow_fields=frozenset({"service_tier", "store"}))
    tiered = replace(plain, offering=replace(plain.offering, tiers={"priority": priority}))
    [offer] = egress.offers(sent, [tiered], 5, stream=False)
    assert offer.body["service_tier"] == "priority" and offer.body["store"] is True and "metadata" not in offer.body
    assert offer.price == priority
    [offer] = egress.offers(sent, [plain], 5, stream=False)  # allowed, but no price for that tier: dropped
    assert "service_tier" not in offer.body and offer.price == plain.offering.price
    [offer] = egress.offers(body(service_tier="default"), [plain], 5, stream=False)
    assert offer.body["service_tier"] == "default"


def test_the_readme_s_coding_agent_turn_fits_a_developer_key() -> None:
    """README, "How much it over-holds": 80 KB of agent prompt on Claude Sonnet 5.5, max_tokens 8192."""
    from gateway.accounts import plans

    history = [{"role": "user" if i % 2 else "assistant", "content": "z" * 2_600} for i in range(28)]
    sent = {"model": "claude-sonnet-5-5", "messages": [{"role": "system", "content": "s" * 7_000}, *history]}
    tool = {"type": "function", "function": {"name": "edit", "description": "d", "parameters": {}}}
    sent["tools"] = [tool]
    assert 79_000 < len(orjson.dumps(sent)) < 81_000
    offers = egress.offers(sent, candidates("claude-sonnet-5-5"), 8_192, stream=False)
    amount, tokens = egress.worst(offers)
    # The dearest offering's: OpenRouter caches on its own, so its prompt is held at the cache-write price.
    assert Decimal("0.28") < amount < Decimal("0.29")
    developer = plans.get("developer")
    assert amount * 17 < developer.monthly_credit < amount * 18
    assert tokens * 11 < developer.tpm < tokens * 12  # the windows count an estimate: about a token for 3 bytes


def test_a_price_bills_the_cache_split_and_reserves_at_the_dearest_prompt_price() -> None:
    sonnet = CATALOG.models["claude-sonnet-5-5"].price  # $2 / $10; reads $0.10, writes $2.50, one-hour writes $4
    million = Decimal(1_000_000)
    # 20,000 prompt tokens: 18,000 read from the cache, 1,000 written to it, 1,000 fresh; 500 out.
    billed = sonnet.cost(20_000, 500, cached=18_000, written=1_000)
    assert billed == (Decimal("0.10") * 18_000 + Decimal("2.50") * 1_000 + Decimal(2) * 1_000 + 10 * 500) / million
    assert sonnet.cost(100, 0, cached=500, written=500) == sonnet.cost(100, 0, cached=100)  # never beyond the prompt
    assert sonnet.most(1_000, 10, long_cache=False) == (Decimal("2.50") * 1_000 + 10 * 10) / million
    assert sonnet.most(1_000, 10) == (Decimal(4) * 1_000 + 10 * 10) / million  # one-hour writes
    plain = CATALOG.models["llama-3.3-70b-instruct"].price  # no cache prices: every prompt token at input
    assert plain.cost(1_000, 0, cached=900) == plain.cost(1_000, 0) == plain.most(1_000, 0)


def test_a_long_prompt_is_billed_and_reserved_at_its_long_context_price() -> None:
    """GPT-6 bills the whole request at twice the input and 1.5 times the output price above 272,000 prompt tokens."""
    sol = CATALOG.models["gpt-6.1-sol"].price
    million = Decimal(1_000_000)
    assert sol.cost(272_000, 100) == (Decimal(2) * 272_000 + Decimal(10) * 100) / million
    assert sol.cost(272_001, 100) == (Decimal(4) * 272_001 + Decimal(15) * 100) / million
    assert sol.most(300_000, 100) >= sol.cost(300_000, 100, written=300_000)
