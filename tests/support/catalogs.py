"""The extra catalog of the end-to-end tests: models on the fake OpenAI upstream (support/fake_upstream.py)."""

from __future__ import annotations

from typing import Any

# Gateway models that map onto the fake upstream's behaviours (see tests/support/fake_upstream.py).
FAKE_BEHAVIOURS = (
    "ok",
    "slow",
    "drip",
    "long",
    "error-500",
    "error-429",
    "error-400",
    "hang",
    "cut",
    "stall",
    "error-mid",
    "no-usage",
    "no-done",
    "odd-finish",
    "tools",
    "not-json",
    "garbage",
    "bad-usage",
    "cached",
    "reasoning",
)
# Models with two offerings whose first provider fails (with this behaviour) before the first byte.
FALLBACKS = {
    "fake-fallback": "error-500",
    "fake-fallback-429": "error-429",
    "fake-fallback-timeout": "hang",
    "fake-no-fallback-400": "error-400",
}


def _model(model_id: str, *offerings: tuple[str, str], **fields: Any) -> dict[str, Any]:
    return {
        "id": model_id,
        "owned_by": "fake-lab",
        "created": 1767225600,
        "pricing": {"input": "1", "output": "2"},
        "offerings": [{"provider": p, "model": m} for p, m in offerings],
        "supports_tools": True,
        **fields,
    }


def fake_catalog(unreachable_url: str) -> dict[str, Any]:
    """The extra catalog: models on the fake upstream, each failing one behind a provider of its own.

    Providers cool down after failures (routing/health.py), so a failure must not make another
    test's provider unavailable: `fake` and `fake2` only ever answer, every other model has a
    provider to itself, and `reset_provider_health` forgets all of their state before each test.
    """

    def on_fake(name: str, env: str = "FAKE_BASE_URL") -> dict[str, Any]:
        return {"name": name, "protocol": "openai", "base_url_env": env, "key_required": False}

    providers = {"fake": on_fake("Fake upstream"), "fake2": on_fake("Fake upstream (second)", "FAKE2_BASE_URL")}
    models = [
        _model(
            "fake-ok",
            ("fake", "ok"),
            ("fake2", "ok"),
            context_length=65536,
            max_output_tokens=2048,
            pricing={"input": "0.50", "output": "1.50"},
            aliases=["fake-alias", "fake/ok"],
            display_name="Fake OK",
            input_modalities=["text", "image"],
        )
    ]
    models[0]["offerings"][1]["pricing"] = {"input": "0.40", "output": "1.20"}
    for behaviour in FAKE_BEHAVIOURS:
        if behaviour != "ok":
            providers[f"fake-{behaviour}"] = on_fake(f"Fake upstream ({behaviour})")
            models.append(_model(f"fake-{behaviour}", (f"fake-{behaviour}", behaviour)))
    cached = next(m for m in models if m["id"] == "fake-cached")  # cache reads at a tenth, writes at 1.25x
    cached["pricing"] = {"input": "1", "output": "2", "cache_read": "0.1", "cache_write": "1.25"}
    # Two offerings: the first fails before the first byte, the second (fake2) answers.
    for model_id, first in FALLBACKS.items():
        providers[model_id] = on_fake(f"Fake upstream ({model_id})")
        models.append(_model(model_id, (model_id, first), ("fake2", "ok")))
    unreachable = {"name": "Nothing listening", "base_url": unreachable_url, "key_required": False}
    providers["fake-unreachable"] = unreachable
    providers["fake-fallback-unreachable"] = dict(unreachable)
    models.append(_model("fake-unreachable", ("fake-unreachable", "ok")))
    models.append(_model("fake-fallback-unreachable", ("fake-fallback-unreachable", "ok"), ("fake2", "ok")))
    providers["fake-offline"] = on_fake("Not configured", "FAKE_OFFLINE_BASE_URL_NEVER_SET")
    models.append(_model("fake-offline", ("fake-offline", "ok")))
    return {"providers": providers, "models": models}
