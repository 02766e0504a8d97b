"""The operator-edited catalog of providers and models, loaded once per process.

The catalog is data (JSON, so loading needs nothing beyond the standard library): adding an
OpenAI-compatible provider or a model is an edit to a file, never to code. Prices are strings
in the file and Decimal here, USD per million tokens.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from gateway import caches
from gateway.config import settings

MILLION = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens: input, output, and input read from or written to the provider's cache.

    Agents send most of their prompt as cache reads, which providers bill at a fraction of the
    input price, and cache writes at a premium that depends on how long the entry lives: Anthropic
    bills a five-minute write at 1.25 times the input price and a one-hour write at twice it.
    Unset, reads and five-minute writes cost the input price; a one-hour write with no price of its
    own is never sent (chat/egress.py drops the lifetime), and costs a five-minute write if billed.
    """

    input: Decimal
    output: Decimal
    cache_read: Decimal | None = None
    cache_write: Decimal | None = None
    cache_write_1h: Decimal | None = None
    # A long prompt's price: above `long_above` prompt tokens, the whole request bills at `long` (OpenAI's GPT-6
    # above 272,000 tokens, say). The bound uses it whenever the prompt's bound may cross the line.
    long_above: int | None = None
    long: Price | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Price:
        def optional(name: str) -> Decimal | None:
            return Decimal(str(raw[name])) if raw.get(name) is not None else None

        tier = raw.get("long_context")
        return cls(
            Decimal(str(raw["input"])),
            Decimal(str(raw["output"])),
            optional("cache_read"),
            optional("cache_write"),
            optional("cache_write_1h"),
            int(tier["above_tokens"]) if tier else None,
            cls.parse(tier) if tier else None,
        )

    def at(self, prompt_tokens: int) -> Price:
        """The price a request with this many prompt tokens bills at."""
        if self.long is not None and self.long_above is not None and prompt_tokens > self.long_above:
            return self.long
        return self

    def cost(
        self, prompt_tokens: int, completion_tokens: int, cached: int = 0, written: int = 0, written_1h: int = 0
    ) -> Decimal:
        """What the provider bills; `cached` and `written` are the prompt tokens read from and written to its
        cache, and `written_1h` the part of `written` that lives an hour."""
        if self.at(prompt_tokens) is not self:
            return self.at(prompt_tokens).cost(prompt_tokens, completion_tokens, cached, written, written_1h)
        read_price = self.input if self.cache_read is None else self.cache_read
        write_price = self.input if self.cache_write is None else self.cache_write
        hour_price = write_price if self.cache_write_1h is None else self.cache_write_1h
        cached = max(min(cached, prompt_tokens), 0)
        written = max(min(written, prompt_tokens - cached), 0)
        written_1h = max(min(written_1h, written), 0)
        fresh = prompt_tokens - cached - written
        prompt = self.input * fresh + read_price * cached + write_price * (written - written_1h)
        return (prompt + hour_price * written_1h + self.output * completion_tokens) / MILLION

    def most(self, prompt_tokens: int, completion_tokens: int, long_cache: bool = True, writes: bool = True) -> Decimal:
        """The most these tokens can cost, whichever part of the prompt the provider caches, and for how long:
        `writes`, whether the request may write cache entries at all (a breakpoint is needed where they are
        billed), and `long_cache`, whether it may write one-hour ones."""
        if self.at(prompt_tokens) is not self:
            return self.at(prompt_tokens).most(prompt_tokens, completion_tokens, long_cache, writes)
        hour = self.cache_write_1h if writes and long_cache else None
        prices = (self.input, self.cache_read, self.cache_write if writes else None, hour)
        dearest = max(p for p in prices if p is not None)
        return (dearest * prompt_tokens + self.output * completion_tokens) / MILLION


FREE = Price(Decimal(0), Decimal(0))


def _tiers(raw: Mapping[str, Any]) -> Mapping[str, Price]:
    return {tier: Price.parse(p) for tier, p in (raw.get("tiers") or {}).items()}


@dataclass(frozen=True, slots=True)
class Allowance:
    """Tokens a chat template adds beyond the text sent: once per request, and per message (or tool)."""

    request: int = 32
    message: int = 8

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None, default: Allowance | None = None) -> Allowance:
        base = default or cls()
        if not raw:
            return base
        return cls(int(raw.get("request", base.request)), int(raw.get("message", base.message)))


@dataclass(frozen=True, slots=True)
class Provider:
    id: str
    name: str
    protocol: str  # "openai", "builtin"; further protocols get their own adapter module
    base_url: str | None = None
    base_url_env: str | None = None  # an environment variable that overrides base_url
    key: str | None = None  # the credential's name: an environment variable, or a field of the secret
    key_required: bool = True
    discover: bool = False  # list the upstream's own models (local servers: Ollama, llama.cpp, vLLM)
    enabled: bool = True
    limits: Mapping[str, int] = field(default_factory=dict)  # its own rpm, tpm, rpd, tpd
    speed_rank: int = 100  # lower is faster: `provider.sort` by throughput or latency
    region: str | None = None  # AWS providers (Bedrock): where to call; the function's region if unset
    cooldown_after: int = 3  # consecutive failures of one of its models before every instance skips it
    cooldown_seconds: float = 30.0  # doubled for each further failure, up to five minutes
    # Fields that change what it charges or stores (chat/egress.py), which the operator lets through.
    allow_fields: frozenset[str] = frozenset()
    output_limit_field: str = "max_tokens"  # where the gateway's output limit goes when the caller set none
    custom_tools: bool = (
        False  # takes custom (freeform) tools as they are; others get function tools (chat/custom_tools.py)
    )
    prompt_allowance: Allowance = Allowance()

    def resolved_base_url(self) -> str | None:
        url = (os.environ.get(self.base_url_env) if self.base_url_env else None) or self.base_url
        return url.rstrip("/") if url else None


@dataclass(frozen=True, slots=True)
class Offering:
    """One provider's way of serving a model: what a key pays (`price`), what the provider charges the operator
    (`cost`, where the catalog knows it), and when the provider stops serving it."""

    provider: str
    upstream_model: str
    price: Price
    tiers: Mapping[str, Price] = field(default_factory=dict)  # by service tier, where the provider allows one
    cost: Price | None = None
    deprecation: date | None = None  # announced: still served, and said so
    retirement: date | None = None  # from this day the provider refuses it: routing skips it

    def retired(self, today: date) -> bool:
        return self.retirement is not None and self.retirement <= today


@dataclass(frozen=True, slots=True)
class Model:
    id: str
    owned_by: str
    created: int
    context_length: int
    max_output_tokens: int
    price: Price
    offerings: tuple[Offering, ...]
    aliases: tuple[str, ...] = ()
    display_name: str | None = None
    model_id: int | None = None
    input_modalities: tuple[str, ...] = ("text",)
    supports_tools: bool = False
    intelligence_rank: int | None = None
    speed_rank: int | None = None
    size_label: str | None = None
    prompt_allowance: Allowance | None = None  # the provider's when None
    # Retired models this one answers for (a seed's or an old catalog's name): found like aliases, and shown.
    replaces: tuple[str, ...] = ()
    # The most one content part of a kind ("image", "file", "audio") can cost; the context length if unstated.
    part_tokens: Mapping[str, int] = field(default_factory=dict)

    def accepts(self, kind: str) -> bool:
        return kind in self.input_modalities

    def serving(self, today: date | None = None) -> tuple[Offering, ...]:
        """The offerings not yet retired."""
        today = today or utc_today()
        return tuple(o for o in self.offerings if not o.retired(today))

    def expiration(self) -> date | None:
        """The day its last offering retires, if every offering has one (OpenRouter's `expiration_date`)."""
        dates = [o.retirement for o in self.offerings]
        return max(dates) if dates and all(dates) else None  # type: ignore[type-var]

    def part_bound(self, kind: str) -> int:
        return self.part_tokens.get(kind, self.context_length)


@dataclass(frozen=True, slots=True)
class Catalog:
    providers: Mapping[str, Provider]
    models: Mapping[str, Model]  # by id, in catalog order
    names: Mapping[str, Model]  # ids, aliases and the names of the models they replace, lower-cased
    refreshed: str | None = None  # the day its facts were last checked against the providers

    def find(self, name: str) -> Model | None:
        return self.names.get(name.lower())


def _provider(pid: str, raw: Mapping[str, Any]) -> Provider:
    return Provider(
        id=pid,
        name=raw.get("name", pid),
        protocol=raw.get("protocol", "openai"),
        base_url=raw.get("base_url"),
        base_url_env=raw.get("base_url_env"),
        key=raw.get("key"),
        key_required=raw.get("key_required", True),
        discover=raw.get("discover", False),
        enabled=raw.get("enabled", True),
        limits=dict(raw.get("limits", {})),
        speed_rank=int(raw.get("speed_rank", 100)),
        region=raw.get("region"),
        cooldown_after=int(raw.get("cooldown_after", 3)),
        cooldown_seconds=float(raw.get("cooldown_seconds", 30)),
        allow_fields=frozenset(raw.get("allow_fields", ())),
        output_limit_field=raw.get("output_limit_field", "max_tokens"),
        custom_tools=bool(raw.get("custom_tools", False)),
        prompt_allowance=Allowance.parse(raw.get("prompt_allowance")),
    )


def utc_today() -> date:
    return datetime.now(UTC).date()


def _date(value: Any) -> date | None:
    return date.fromisoformat(value) if isinstance(value, str) and value else None


def _model(raw: Mapping[str, Any]) -> Model:
    price = Price.parse(raw["pricing"]) if "pricing" in raw else FREE
    tiers = _tiers(raw.get("pricing") or {})
    offerings = tuple(
        Offering(
            provider=o["provider"],
            upstream_model=o.get("model", raw["id"]),
            price=Price.parse(o["pricing"]) if "pricing" in o else price,
            tiers=_tiers(o["pricing"]) if "pricing" in o else tiers,
            cost=Price.parse(o["cost"]) if "cost" in o else None,
            deprecation=_date(o.get("deprecation_date")),
            retirement=_date(o.get("retirement_date")),
        )
        for o in raw.get("offerings", ())
    )
    return Model(
        id=raw["id"],
        owned_by=raw.get("owned_by", offerings[0].provider if offerings else "gateway"),
        created=int(raw.get("created", 0)),
        context_length=int(raw.get("context_length", 8192)),
        max_output_tokens=int(raw.get("max_output_tokens", 4096)),
        price=price,
        offerings=offerings,
        aliases=tuple(raw.get("aliases", ())),
        display_name=raw.get("display_name"),
        model_id=raw.get("model_id"),
        input_modalities=tuple(raw.get("input_modalities", ("text",))),
        supports_tools=bool(raw.get("supports_tools", False)),
        intelligence_rank=raw.get("intelligence_rank"),
        speed_rank=raw.get("speed_rank"),
        size_label=raw.get("size_label"),
        prompt_allowance=Allowance.parse(raw["prompt_allowance"]) if "prompt_allowance" in raw else None,
        part_tokens={k: int(v) for k, v in (raw.get("part_tokens") or {}).items()},
        replaces=tuple(raw.get("replaces", ())),
    )


def build(documents: Iterable[Mapping[str, Any]]) -> Catalog:
    """Merge catalog documents in order: a later provider or model with the same id replaces the earlier."""
    providers: dict[str, Provider] = {}
    models: dict[str, Model] = {}
    refreshed = None
    for doc in documents:
        refreshed = doc.get("refreshed", refreshed)
        for pid, raw in doc.get("providers", {}).items():
            providers[pid] = _provider(pid, raw)
        for raw in doc.get("models", ()):
            models[raw["id"]] = _model(raw)
    for model in models.values():
        for offering in model.offerings:
            if offering.provider not in providers:
                raise ValueError(f"model {model.id!r} names unknown provider {offering.provider!r}")
    names: dict[str, Model] = {}
    for model in models.values():
        for name in (*model.replaces, *model.aliases):
            names[name.lower()] = model
    for model in models.values():  # an id outranks any other model's alias or replaced name
        names[model.id.lower()] = model
    return Catalog(providers=providers, models=models, names=names, refreshed=refreshed)


def read(paths: Iterable[Path]) -> Catalog:
    return build(json.loads(Path(p).read_text()) for p in paths)


@caches.resettable
@lru_cache(maxsize=1)
def catalog() -> Catalog:
    return read(settings().catalog_paths)
