"""Settings read once from the environment, so each Lambda is configured by its template alone."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from gateway import caches

BUNDLED_CATALOG = Path(__file__).with_name("catalog.json")


@dataclass(frozen=True, slots=True)
class Settings:
    keys_table: str
    usage_table: str
    catalog_paths: tuple[Path, ...]
    upstream_timeout: float
    upstream_connect_timeout: float
    store_retry_seconds: float  # how long admission and settlement keep trying a store that does not answer
    stream_keepalive: float  # seconds of a silent stream before an SSE comment keeps the connection open
    key_cache_seconds: float
    max_body_bytes: int
    provider_secret_id: str | None  # the chat function's provider keys (providers/credentials.py)
    provider_key_names_parameter: str | None  # which of them are set, for functions that may not read them
    region: str


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


def catalog_paths() -> tuple[Path, ...]:
    """GATEWAY_CATALOG replaces the bundled catalog; GATEWAY_CATALOG_EXTRA files extend it (later wins)."""
    base = os.environ.get("GATEWAY_CATALOG")
    paths = [Path(base) if base else BUNDLED_CATALOG]
    paths += [Path(p) for p in os.environ.get("GATEWAY_CATALOG_EXTRA", "").split(os.pathsep) if p]
    return tuple(paths)


@caches.resettable
@lru_cache(maxsize=1)
def settings() -> Settings:
    return Settings(
        keys_table=os.environ.get("KEYS_TABLE", "gateway-keys"),
        usage_table=os.environ.get("USAGE_TABLE", "gateway-usage"),
        catalog_paths=catalog_paths(),
        upstream_timeout=_float("UPSTREAM_TIMEOUT_SECONDS", 180.0),
        upstream_connect_timeout=_float("UPSTREAM_CONNECT_TIMEOUT_SECONDS", 10.0),
        store_retry_seconds=_float("STORE_RETRY_SECONDS", 20.0),
        stream_keepalive=_float("STREAM_KEEPALIVE_SECONDS", 20.0),
        key_cache_seconds=_float("KEY_CACHE_SECONDS", 5.0),
        max_body_bytes=int(os.environ.get("MAX_BODY_BYTES", str(10 * 1024 * 1024))),
        provider_secret_id=os.environ.get("PROVIDER_SECRET_ID") or None,
        provider_key_names_parameter=os.environ.get("PROVIDER_KEY_NAMES_PARAMETER") or None,
        region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
    )
