"""Models of local OpenAI-compatible servers (Ollama, llama.cpp, vLLM), listed from their /models.

Run once at local start-up, never in a Lambda: the result is written as an extra catalog
file, so the rest of the gateway sees ordinary catalog entries.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import httpx

from gateway.providers import credentials
from gateway.routing.catalog import Catalog


def discover(catalog: Catalog, timeout: float = 3.0) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for provider in catalog.providers.values():
        base_url = provider.resolved_base_url()
        if not (provider.discover and base_url):
            continue
        key = credentials.get(provider.key)
        headers = {"authorization": f"Bearer {key}"} if key else {}
        try:
            listed = httpx.get(f"{base_url}/models", headers=headers, timeout=timeout).json().get("data", [])
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            print(f"  {provider.name}: could not list models at {base_url} ({type(exc).__name__})")
            continue
        for item in listed:
            name = item.get("id") if isinstance(item, dict) else None
            if not name or catalog.find(name) is not None:
                continue
            found.append(
                {
                    "id": name,
                    "owned_by": provider.id,
                    "aliases": [f"{provider.id}/{name}"],
                    "pricing": {"input": "0", "output": "0"},
                    "offerings": [{"provider": provider.id, "model": name}],
                }
            )
    return found


def write_extra_catalog(models: list[dict[str, Any]]) -> str:
    """Add the models through GATEWAY_CATALOG_EXTRA, the same door an operator uses."""
    fd, path = tempfile.mkstemp(prefix="gateway-discovered-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump({"models": models}, f)
    extra = os.environ.get("GATEWAY_CATALOG_EXTRA")
    os.environ["GATEWAY_CATALOG_EXTRA"] = os.pathsep.join(p for p in (path, extra) if p)
    return path
