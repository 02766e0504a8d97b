"""Which adapter serves a provider, and whether the provider can be called at all right now.

A provider without a base URL or a required key is unavailable, not an error: its models
stay listed and the router skips it. Adapter modules are imported on first use, so a
function only loads the protocols its catalog actually uses.

`available` builds the adapter, reading the provider's key (the chat function, local runs);
`configured` answers the same question from which keys are set, reading none (the models and
stats functions, whose IAM role cannot read the provider secret; see providers/credentials.py).
"""

from __future__ import annotations

import importlib
import os
import time

from gateway import caches
from gateway.catalog import Provider
from gateway.providers import credentials
from gateway.upstream import Adapter

# protocol -> (module, class) of the adapters that reach a provider over HTTP with a key
HTTP_ADAPTERS = {
    "openai": ("gateway.providers.openai_compat", "OpenAICompatible"),
    "anthropic": ("gateway.providers.anthropic", "Anthropic"),
}

# Rebuilt as often as the secret is re-read, so a rotated or newly added key takes effect.
_adapters: dict[str, tuple[float, Adapter | None]] = {}
caches.register(_adapters.clear, f"{__name__}._adapters")


def bedrock_region(provider: Provider) -> str | None:
    """Where a Bedrock provider is called: IAM credentials need no key, so it is opted into by region."""
    return provider.region or os.environ.get("BEDROCK_REGION") or None


def _ready(provider: Provider, key_set: bool) -> bool:
    """Whether the provider can be called here, given whether its key is set: one rule for both questions."""
    if not provider.enabled:
        return False
    if provider.protocol == "builtin":
        return True
    if provider.protocol == "bedrock":
        return bedrock_region(provider) is not None
    if provider.protocol in HTTP_ADAPTERS:
        return provider.resolved_base_url() is not None and (key_set or not provider.key_required)
    return False  # a protocol without an adapter


def _build(provider: Provider) -> Adapter | None:
    key = credentials.get(provider.key) if provider.protocol in HTTP_ADAPTERS else None
    if not _ready(provider, key is not None):
        return None
    if provider.protocol == "builtin":
        from gateway.providers.builtin import Builtin

        return Builtin()
    if provider.protocol == "bedrock":
        from gateway.providers.bedrock import Bedrock

        return Bedrock(bedrock_region(provider), provider.name)
    module, name = HTTP_ADAPTERS[provider.protocol]
    return getattr(importlib.import_module(module), name)(provider.resolved_base_url(), key, provider.name)


def adapter(provider: Provider) -> Adapter | None:
    now = time.monotonic()
    cached = _adapters.get(provider.id)
    if cached is None or cached[0] <= now:
        cached = (now + credentials.SECRET_MAX_AGE_SECONDS, _build(provider))
        _adapters[provider.id] = cached
    return cached[1]


def available(provider: Provider) -> bool:
    return adapter(provider) is not None


def configured(provider: Provider) -> bool:
    """`available` without reading a key: from settings and the list of set keys (credentials.listed)."""
    return _ready(provider, credentials.listed(provider.key))
