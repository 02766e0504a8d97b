"""GET /v1/models and GET /v1/models/{model} end to end: OpenAI's model objects plus the catalog's
own fields, validated against the schema, through the SDK and raw."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from tests.support.money import usd
from tests.support.openapi import validate_error, validate_model, validate_models_list

CATALOG_FIELDS = ("context_length", "max_output_tokens", "pricing", "providers", "input_modalities", "supports_tools")


def by_id(listing: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["id"]: m for m in listing["data"]}


@pytest.fixture
def listing(http: httpx.Client) -> dict[str, Any]:
    response = http.get("/models")
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"]
    body = response.json()
    validate_models_list(body)
    return body


def test_the_list_holds_the_bundled_and_the_extra_catalog(listing: dict[str, Any]) -> None:
    assert listing["object"] == "list"
    models = by_id(listing)
    assert {"gateway-echo", "gpt-4o", "fake-ok", "fake-fallback"} <= set(models)
    assert len(models) == len(listing["data"]), "a model is listed twice"
    for model in listing["data"]:
        assert model["object"] == "model"
        assert isinstance(model["created"], int) and model["owned_by"]
        for name in CATALOG_FIELDS:
            assert name in model, f"{model['id']} lacks {name}"


def test_catalog_fields_of_a_model(listing: dict[str, Any]) -> None:
    model = by_id(listing)["fake-ok"]
    assert model["owned_by"] == "fake-lab"
    assert model["created"] == 1767225600
    assert model["context_length"] == 65536
    assert model["max_output_tokens"] == 2048
    assert usd(model["pricing"]["input"]) == Decimal("0.50")
    assert usd(model["pricing"]["output"]) == Decimal("1.50")
    assert set(model["aliases"]) == {"fake-alias", "fake/ok"}
    assert model["input_modalities"] == ["text", "image"]
    assert model["supports_tools"] is True
    assert model["available"] is True
    providers = {p["provider"]: p for p in model["providers"]}
    assert list(providers) == ["fake", "fake2"]
    assert providers["fake"]["upstream_model"] == "ok" and providers["fake"]["available"] is True
    assert usd(providers["fake2"]["pricing"]["input"]) == Decimal("0.40")  # the offering's own price
    assert usd(providers["fake"]["pricing"]["output"]) == Decimal("1.50")  # the model's price


def test_model_objects_carry_ranks_and_limits(listing: dict[str, Any]) -> None:
    """DESIGN.md: model objects carry "the catalog fields users ask for (context length, prices, limits, ranks)"."""
    echo = by_id(listing)["gateway-echo"]
    assert (echo.get("intelligence_rank"), echo.get("speed_rank"), echo.get("size_label")) == (99, 1, "Tiny")
    oss = by_id(listing)["gpt-oss-120b"]
    groq = next(p for p in oss["providers"] if p["provider"] == "groq")
    assert groq.get("limits") == {"rpm": 30, "tpm": 6000}


def test_an_unconfigured_provider_is_listed_as_unavailable(listing: dict[str, Any]) -> None:
    model = by_id(listing)["fake-offline"]
    assert model["available"] is False
    assert [p["available"] for p in model["providers"]] == [False]
    assert by_id(listing)["gateway-echo"]["available"] is True


def test_the_sdk_lists_models(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert "gateway-echo" in ids and "fake-ok" in ids
    echo = next(m for m in client.models.list() if m.id == "gateway-echo")
    assert echo.object == "model" and echo.owned_by == "gateway"
    assert echo.model_extra is not None and echo.model_extra["context_length"] == 32768


@pytest.mark.parametrize(
    ("name", "expected"), [("fake-ok", "fake-ok"), ("fake-alias", "fake-ok"), ("ECHO", "gateway-echo")]
)
def test_retrieve_a_model_by_id_or_alias(http: httpx.Client, name: str, expected: str) -> None:
    response = http.get(f"/models/{name}")
    assert response.status_code == 200, response.text
    body = response.json()
    validate_model(body)
    assert body["id"] == expected


def test_retrieve_a_model_whose_name_has_a_slash(http: httpx.Client) -> None:
    response = http.get("/models/fake/ok")
    assert response.status_code == 200, response.text
    validate_model(response.json())
    assert response.json()["id"] == "fake-ok"


def test_the_sdk_retrieves_a_model(client: openai.OpenAI, listing: dict[str, Any]) -> None:
    model = client.models.retrieve("fake-ok")
    assert model.id == "fake-ok" and model.owned_by == "fake-lab" and model.created == 1767225600
    assert model.model_dump(exclude_unset=True) == by_id(listing)["fake-ok"], "retrieve and list disagree"


def test_an_unknown_model_is_a_404(http: httpx.Client, client: openai.OpenAI) -> None:
    response = http.get("/models/no-such-model")
    assert response.status_code == 404
    body = response.json()
    validate_error(body, status=404, path="/models/{model}")
    assert body["error"]["code"] == "model_not_found"
    assert "no-such-model" in body["error"]["message"]
    assert response.headers["x-should-retry"] == "false"
    assert response.headers["x-request-id"]
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_the_model_list_needs_no_key(anon_http: httpx.Client) -> None:
    """The list is public (a pricing page or the playground shows it before a key is pasted)."""
    response = anon_http.get("/models")
    assert response.status_code == 200
    validate_models_list(response.json())


def test_unified_model_rows(anon_http: httpx.Client) -> None:
    """GET /api/models (the unified API): a bare array of rows with the catalog number, ranks and limits."""
    response = anon_http.get(str(anon_http.base_url).removesuffix("/v1/") + "/api/models")
    assert response.status_code == 200, response.text
    rows = response.json()
    assert isinstance(rows, list)
    echo = next(r for r in rows if r["display_name"] == "Gateway Echo (offline)")
    unified_fields = {"id", "platform", "model_id", "display_name", "intelligence_rank", "speed_rank", "size_label"}
    unified_fields |= {"rpm_limit", "tpm_limit", "context_window", "enabled"}
    assert unified_fields <= set(echo)
    assert (echo["id"], echo["platform"], echo["intelligence_rank"], echo["context_window"]) == (
        1,
        "builtin",
        99,
        32768,
    )
    assert echo["enabled"] is True


def test_model_objects_carry_openrouter_s_fields(listing: dict[str, Any]) -> None:
    """Roo Code and Kilo Code read OpenRouter's model objects from a custom base URL."""
    model = by_id(listing)["fake-ok"]
    assert model["pricing"]["prompt"] == "0.0000005" and model["pricing"]["completion"] == "0.0000015"  # per token
    assert usd(model["pricing"]["prompt"]) * 1_000_000 == usd(model["pricing"]["input"])
    assert model["architecture"]["input_modalities"] == ["text", "image"]
    assert model["architecture"]["modality"] == "text+image->text"
    assert model["top_provider"] == {"context_length": 65536, "max_completion_tokens": 2048, "is_moderated": False}
    assert {"tools", "max_tokens", "response_format"} <= set(model["supported_parameters"])
    cached = by_id(listing)["fake-cached"]["pricing"]
    assert cached["input_cache_read"] == "0.0000001" and cached["input_cache_write"] == "0.00000125"


def test_the_seeds_base_url_works_locally_too(anon_http: httpx.Client, api_key: str) -> None:
    """The seeds write `.../api/v1`: deployed, the stage supplies `/api`; locally the server answers there too."""
    root = str(anon_http.base_url).removesuffix("/v1/")
    listed = anon_http.get(root + "/api/v1/chat/models")  # shared/seeds/003's list route
    assert listed.status_code == 200, listed.text
    validate_models_list(listed.json())
    assert listed.json() == anon_http.get(root + "/v1/chat/models").json() == anon_http.get("/models").json()
    with openai.OpenAI(base_url=root + "/api/v1", api_key=api_key, max_retries=0) as sdk:
        answer = sdk.chat.completions.create(model="gateway-echo", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content
    missing = anon_http.get(root + "/api/v1/no-such-route")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
