"""Which adapter serves a provider, and whether the provider can be called at all right now.

A provider without a base URL or a required key is unavailable, not an error: its models
stay listed and the router skips it. Adapter modules are imported on first use, so a
function only loads the protocols its catalog actually uses.
"""

from __future__ import annotations

import importlib
import os
import time

from gateway.providers import credentials
from gateway.providers.base import Adapter
from gateway.routing.catalog import Provider

# protocol -> (module, class) of the adapters that reach a provider over HTTP with a key
HTTP_ADAPTERS = {
    "openai": ("gateway.providers.openai_compat", "OpenAICompatible"),
    "anthropic": ("gateway.providers.anthropic", "Anthropic"),
}

# Rebuilt as often as the secret is re-read, so a rotated or newly added key takes effect.
_adapters: dict[str, tuple[float, Adapter | None]] = {}


def _build(provider: Provider) -> Adapter | None:
    if not provider.enabled:
        return None
    if provider.protocol == "builtin":
        from gateway.providers.builtin import Builtin

        return Builtin()
    if provider.protocol == "bedrock":
        from gateway.providers.bedrock import Bedrock

        region = provider.region or os.environ.get("BEDROCK_REGION")  # IAM credentials: opt in by region
        return Bedrock(region, provider.name) if region else None
    if provider.protocol in HTTP_ADAPTERS:
        base_url = provider.resolved_base_url()
        key = credentials.get(provider.key)
        if not base_url or (provider.key_required and not key):
            return None
        module, name = HTTP_ADAPTERS[provider.protocol]
        return getattr(importlib.import_module(module), name)(base_url, key, provider.name)
    return None  # a protocol without an adapter


def adapter(provider: Provider) -> Adapter | None:
    now = time.monotonic()
    cached = _adapters.get(provider.id)
    if cached is None or cached[0] <= now:
        cached = (now + credentials.SECRET_MAX_AGE_SECONDS, _build(provider))
        _adapters[provider.id] = cached
    return cached[1]


def available(provider: Provider) -> bool:
    return adapter(provider) is not None
