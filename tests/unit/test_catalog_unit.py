"""The shipped catalog is current and sells at or above cost; `gateway-admin catalog check` and `refresh` say so
and keep it so; the seeds' model names still answer (issue 20)."""

from __future__ import annotations

import json
import os
import re
from datetime import date, timedelta
from pathlib import Path

import pytest

from gateway.admin import catalog_tools
from gateway.catalog import read
from gateway.config import BUNDLED_CATALOG

ROOT = Path(__file__).resolve().parents[2]
SEEDS = ROOT.parent / "shared" / "seeds"
CATALOG = read([BUNDLED_CATALOG])
SEEDS_004 = BUNDLED_CATALOG.parent / "catalogs" / "seeds-004.json"
# Every model name the seeds' documents use, as they write them.
SEED_NAMES = (
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-5.4",
    "claude-3-5-sonnet-20241022",
    "claude-3-5-sonnet",
    "claude-3-5-haiku-20241022",
    "gemini-2.5-flash-preview-05-20",
    "gemini-2.0-flash",
    "gemini-3-flash-preview",
    "deepseek-chat",
    "llama-3.3-70b-instruct",
    "llama-3.3-70b-versatile",
)


def check(*paths: Path, today: date | None = None) -> list[catalog_tools.Finding]:
    cat, raw = catalog_tools.load(paths or [BUNDLED_CATALOG])
    return catalog_tools.check(cat, raw, today or date(2026, 12, 7), catalog_tools.granted_in(ROOT / "template.yaml"))


def test_the_shipped_catalog_has_no_retired_offering_no_price_below_cost_and_every_permission() -> None:
    findings = check()
    assert [f for f in findings if f.level == "error"] == []
    assert not [f for f in findings if "below its cost" in f.what or "states no" in f.what]
    assert CATALOG.refreshed == "2026-12-07"


def test_the_check_finds_what_it_is_for(tmp_path: Path) -> None:
    document = json.loads(BUNDLED_CATALOG.read_text())
    sonnet = next(m for m in document["models"] if m["id"] == "claude-sonnet-5-5")
    sonnet["pricing"] = {**sonnet["pricing"], "output": "5"}  # below the $10 it costs
    sonnet["offerings"][0]["retirement_date"] = "2026-12-01"
    del next(m for m in document["models"] if m["id"] == "gpt-6-luna")["offerings"][0]["cost"]
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(document))
    found = {(f.level, f.model, f.provider, f.what.split(":")[0].split(" sold")[0]) for f in check(path)}
    assert ("error", "claude-sonnet-5-5", "anthropic", "retired on 2026-12-01") in found
    assert ("warning", "claude-sonnet-5-5", "bedrock", "output") in found
    assert ("warning", "gpt-6-luna", "openai", "states no cost") in found
    later = check(today=date(2027, 1, 1))  # gpt-4o retires on 2027-01-14
    assert any(f.model == "gpt-4o" and f.what == "retires on 2027-01-14" for f in later)


def test_the_template_grants_exactly_the_catalogs_bedrock_models() -> None:
    needed = {
        arn
        for model in CATALOG.models.values()
        for offering in model.offerings
        if CATALOG.providers[offering.provider].protocol == "bedrock"
        for arn in catalog_tools.bedrock_arns(offering.upstream_model)
    }
    assert needed and needed == catalog_tools.granted_in(ROOT / "template.yaml")
    assert catalog_tools.bedrock_arns("global.anthropic.claude-sonnet-5-5") == [
        "arn:${AWS::Partition}:bedrock:${BedrockRegion}:${AWS::AccountId}:inference-profile/global.anthropic.claude-sonnet-5-5",
        "arn:${AWS::Partition}:bedrock:*::foundation-model/anthropic.claude-sonnet-5-5",
    ]


@pytest.mark.parametrize("name", SEED_NAMES)
def test_every_seed_model_name_answers(name: str) -> None:
    model = CATALOG.find(name)
    assert model is not None, f"{name} answers nothing"
    assert model.serving(date(2026, 12, 7)), f"{name} answers as {model.id}, which nothing serves"


def test_the_seed_names_are_the_seeds_own() -> None:
    if not SEEDS.is_dir():
        assert not os.environ.get("CI"), "CI runs beside shared/: its seeds must be read"
        pytest.skip("shared/seeds is not beside this clone")
    text = "\n".join(p.read_text(errors="replace") for p in SEEDS.iterdir())
    written = set(re.findall(r"\b(?:gpt|claude|gemini|deepseek|llama)-[0-9a-z.\-]*[0-9a-z]\b", text))
    assert written <= set(SEED_NAMES), written - set(SEED_NAMES)


def test_the_seeds_price_list_ships_and_the_check_warns_of_it() -> None:
    cat = read([BUNDLED_CATALOG, SEEDS_004])
    assert str(cat.models["deepseek-chat"].price.input) == "0.007"  # the seed's price, served by DeepSeek V4 Flash
    assert cat.models["deepseek-chat"].offerings[0].upstream_model == "deepseek-v4-flash"
    findings = check(BUNDLED_CATALOG, SEEDS_004)
    below = {f.model for f in findings if "below its cost" in f.what}
    assert {"gpt-4o", "claude-3-5-sonnet-20241022", "deepseek-chat", "llama-3.3-70b-instruct"} <= below
    assert not [f for f in findings if f.level == "error"]  # selling below cost is the operator's call


def test_refresh_takes_costs_dates_and_limits_from_a_price_map(tmp_path: Path) -> None:
    document = {
        "models": [
            {
                "id": "m",
                "context_length": 100_000,
                "max_output_tokens": 8_000,
                "pricing": {"input": "3", "output": "15"},
                "offerings": [{"provider": "anthropic", "model": "claude-x"}, {"provider": "groq", "model": "x"}],
            }
        ]
    }
    prices = {
        "claude-x": {
            "input_cost_per_token": 3e-06,
            "output_cost_per_token": 1.5e-05,
            "cache_read_input_token_cost": 3e-07,
            "cache_creation_input_token_cost": 3.75e-06,
            "cache_creation_input_token_cost_above_1hr": 6e-06,
            "max_input_tokens": 200_000,
            "max_output_tokens": 64_000,
            "deprecation_date": "2027-06-01",
        },
        "groq/x": {"input_cost_per_token": 5e-07, "output_cost_per_token": 1e-06, "max_input_tokens": 131_072},
    }
    changes = catalog_tools.refresh(document, prices, date(2026, 12, 7))
    anthropic, groq = document["models"][0]["offerings"]
    assert anthropic["cost"] == {
        "input": "3",
        "output": "15",
        "cache_read": "0.3",
        "cache_write": "3.75",
        "cache_write_1h": "6",
    }
    assert anthropic["retirement_date"] == "2027-06-01" and groq["cost"] == {"input": "0.5", "output": "1"}
    assert document["models"][0]["context_length"] == 131_072  # the smallest window of its providers
    assert document["models"][0]["max_output_tokens"] == 8_000  # a higher output limit is reported, not applied
    assert any("kept at 8000" in line for line in changes) and document["refreshed"] == "2026-12-07"
    path = tmp_path / "c.json"
    path.write_text(json.dumps(document))
    again = catalog_tools.refresh_file(path, _write(tmp_path, prices), write=True)
    assert again == ["m: max_output_tokens kept at 8000 (the map allows 64000)"]  # nothing else left to change
    assert json.loads(path.read_text())["models"][0]["offerings"][1]["cost"] == {"input": "0.5", "output": "1"}


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "map.json"
    path.write_text(json.dumps(data))
    return path


def test_nothing_retires_within_a_day_of_the_shipped_date_and_retired_offerings_are_skipped() -> None:
    for model in CATALOG.models.values():
        for offering in model.offerings:
            assert not offering.retired(date(2026, 12, 8)), (model.id, offering.provider)
    gpt4o = CATALOG.models["gpt-4o"]
    assert gpt4o.serving(date(2027, 1, 13)) and not gpt4o.serving(date(2027, 1, 14))
    assert gpt4o.expiration() == date(2027, 1, 14) and CATALOG.models["claude-sonnet-5-5"].expiration() is None
    assert timedelta(days=0) < gpt4o.expiration() - date(2026, 12, 7)  # type: ignore[operator]
