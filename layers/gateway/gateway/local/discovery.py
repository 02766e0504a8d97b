"""Models of local OpenAI-compatible servers (Ollama, llama.cpp, vLLM), listed from their /models.

Run once at local start-up, never in a Lambda, and before anything reads `settings()`: the
result is an extra catalog file named in GATEWAY_CATALOG_EXTRA, and `settings()` reads the
catalog paths once and caches them, so discovering later would add a file nobody reads.
The rest of the gateway then sees ordinary catalog entries.

Local ids are often awkward to type (llama.cpp lists a GGUF file path), so each model also
gets a short alias: `gemma-3-270m-it` and `llamacpp/gemma-3-270m-it` for
`/models/gemma-3-270m-it-Q8_0.gguf`, unless another model already answers to that name.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections import Counter
from typing import Any

import httpx

from gateway.catalog import Catalog, Provider

DEFAULT_OUTPUT_TOKENS = 4096  # the catalog's default max_output_tokens
_FILE = re.compile(r"\.(?:gguf|ggml|bin|safetensors)$", re.IGNORECASE)
_SHARD = re.compile(r"-\d{5}-of-\d{5}$")
# llama.cpp's quantisation names (Q8_0, Q4_K_M, IQ4_XS, UD-Q4_K_XL, F16, BF16), after - . _ or an Ollama tag's colon
_QUANT = re.compile(r"[-_.:](?:UD-)?(?:I?Q\d+(?:_[A-Z0-9]+)*|B?F16|F32|FP16|FP8)$", re.IGNORECASE)
_SUFFIX = re.compile(r"(?:[-_.]gguf|:latest)$", re.IGNORECASE)


def _stem(model_id: str) -> str:
    """A path's or repository's last part, without a model file's extension: `gemma-3-270m-it-Q8_0`."""
    return _FILE.sub("", re.split(r"[\\/]", model_id.rstrip("/\\"))[-1]) or model_id


def short_name(model_id: str) -> str:
    """A name to type for a listed id: its stem without shard and quantisation suffixes, lower-cased."""
    name = _SHARD.sub("", _stem(model_id))
    for pattern in (_QUANT, _SUFFIX, _QUANT):  # Llama-3.2-1B-Instruct-GGUF:Q4_K_M
        name = pattern.sub("", name)
    return (name or model_id).lower()


def listed_models(document: Any) -> list[dict[str, Any]]:
    """The entries of a /models answer: OpenAI's `data` (vLLM, llama.cpp, Ollama's /v1), else Ollama's `models`."""
    if not isinstance(document, dict):
        return []
    if isinstance(document.get("data"), list):
        return [m for m in document["data"] if isinstance(m, dict) and isinstance(m.get("id"), str) and m["id"]]
    entries = []
    for m in document.get("models") or ():
        name = (m.get("model") or m.get("name")) if isinstance(m, dict) else None
        if isinstance(name, str) and name:
            entries.append({**m, "id": name})
    return entries


def _list(provider: Provider, base_url: str, timeout: float) -> list[dict[str, Any]] | None:
    # Keys from the environment only: credentials.get would read settings() (for the secret), too early.
    key = os.environ.get(provider.key) if provider.key else None
    headers = {"authorization": f"Bearer {key}"} if key else {}
    try:
        response = httpx.get(f"{base_url}/models", headers=headers, timeout=timeout)
        response.raise_for_status()
        return listed_models(response.json())
    except (httpx.HTTPError, ValueError) as exc:
        print(f"  {provider.name}: could not list models at {base_url} ({type(exc).__name__})", flush=True)
        return None


def discover(catalog: Catalog, timeout: float = 3.0) -> list[dict[str, Any]]:
    """Catalog entries for the models the catalog's `discover` providers list; one per id, every lister an offering."""
    found: dict[str, dict[str, Any]] = {}
    for provider in catalog.providers.values():
        base_url = provider.resolved_base_url()
        if not (provider.discover and provider.enabled and base_url):
            continue
        listed = _list(provider, base_url, timeout)
        if listed is None:
            continue
        print(f"  {provider.name}: {len(listed)} model{'s' if len(listed) != 1 else ''} at {base_url}", flush=True)
        for item in listed:
            name = item["id"]
            if catalog.find(name) is not None:
                continue  # the catalog's own entry stands
            entry = found.setdefault(
                name.lower(),
                {
                    "id": name,
                    "owned_by": provider.id,
                    "display_name": _stem(name),
                    "aliases": [],
                    "pricing": {"input": "0", "output": "0"},
                    "offerings": [],
                },
            )
            if all(o["provider"] != provider.id for o in entry["offerings"]):
                entry["offerings"].append({"provider": provider.id, "model": name})
                entry["aliases"].append(f"{provider.id}/{name}")
            context = item.get("max_model_len")  # vLLM's: it refuses prompt + max_tokens beyond it
            if isinstance(context, int) and context > 0:
                entry["context_length"] = min(context, entry.get("context_length", context))
                entry["max_output_tokens"] = max(1, min(DEFAULT_OUTPUT_TOKENS, entry["context_length"] // 2))
    models = list(found.values())
    _add_short_aliases(catalog, models)
    return models


def _add_short_aliases(catalog: Catalog, models: list[dict[str, Any]]) -> None:
    """`short` and `provider/short` for each model, where no catalog name or other discovered model claims them."""
    wanted: dict[int, list[str]] = {}
    for i, model in enumerate(models):
        short = short_name(model["id"])
        names = [short] + [f"{o['provider']}/{short}" for o in model["offerings"]]
        wanted[i] = [n for n in dict.fromkeys(names) if n != model["id"].lower()]
    claims = Counter(n for names in wanted.values() for n in names)
    taken = {m["id"].lower() for m in models} | {a.lower() for m in models for a in m["aliases"]}
    for i, model in enumerate(models):
        for name in wanted[i]:
            if claims[name] == 1 and name not in taken and catalog.find(name) is None:
                model["aliases"].append(name)


def write_extra_catalog(models: list[dict[str, Any]]) -> str:
    """Add the models through GATEWAY_CATALOG_EXTRA, the same door an operator uses."""
    fd, path = tempfile.mkstemp(prefix="gateway-discovered-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump({"models": models}, f)
    extra = os.environ.get("GATEWAY_CATALOG_EXTRA")
    os.environ["GATEWAY_CATALOG_EXTRA"] = os.pathsep.join(p for p in (path, extra) if p)
    _forget_catalog_if_read()
    return path


def _forget_catalog_if_read() -> None:
    """If settings() already cached the catalog paths (discovery ran too late), make it read them again."""
    from gateway import catalog, config

    if config.settings.cache_info().currsize:
        config.settings.cache_clear()
        catalog.catalog.cache_clear()


def extend_catalog(timeout: float = 3.0) -> list[dict[str, Any]]:
    """Discover the local servers' models and add them to the catalog: call before anything reads settings()."""
    from gateway import catalog, config

    models = discover(catalog.read(config.catalog_paths()), timeout)  # the paths settings() will read
    if models:
        write_extra_catalog(models)
    return models
