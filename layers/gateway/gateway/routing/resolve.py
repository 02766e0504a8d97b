"""From what the caller asked for to the ordered candidates that can serve it now.

A request names one model (an id or an alias), or `auto`, or a catalog number (`model_id`,
the unified API's routes), optionally with OpenRouter's `models` fallback list and `provider`
preferences. Every model yields its offerings; offerings whose provider is unconfigured,
cooling down or at its own limit are left out, so no call is wasted on them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from gateway import tokens
from gateway.catalog import Catalog, Model, Offering, Provider, catalog
from gateway.errors import GatewayError, invalid_request, model_not_found, service_unavailable
from gateway.providers import registry
from gateway.routing import health
from gateway.upstream import Adapter

AUTO = "auto"
AUTO_MODELS = 3  # how many models `auto` keeps as fallbacks


@dataclass(frozen=True, slots=True)
class Candidate:
    model: Model
    provider: Provider
    offering: Offering
    adapter: Adapter


@dataclass(frozen=True, slots=True)
class Needs:
    """What a model must offer to serve the request."""

    context: int
    tools: bool
    images: bool

    @classmethod
    def of(cls, body: dict[str, Any]) -> Needs:
        messages = body.get("messages") or []
        images = any(
            isinstance(p, dict) and p.get("type") in ("image_url", "input_image")
            for m in messages
            if isinstance(m.get("content"), list)
            for p in m["content"]
        )
        output = body.get("max_completion_tokens") or body.get("max_tokens") or 0
        return cls(tokens.count_messages(messages) + output, bool(body.get("tools")), images)

    def met_by(self, model: Model) -> bool:
        return (
            model.context_length >= self.context
            and (model.supports_tools or not self.tools)
            and ("image" in model.input_modalities or not self.images)
        )


def _preferences(body: dict[str, Any]) -> dict[str, Any]:
    """The `provider` preferences in a shape routing can trust: every bad one is a 400 naming it.

    validate() refuses these shapes first; this repeats the checks so that resolve() is safe on
    any body, and drops null prices so that they mean "no limit" rather than a Decimal error.
    """
    prefs = body.get("provider")
    if prefs is None:
        return {}
    if not isinstance(prefs, dict):
        raise invalid_request("Invalid type for 'provider': expected an object of routing preferences.", "provider")
    for name in ("order", "only", "ignore"):
        value = prefs.get(name)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise invalid_request(
                f"Invalid type for 'provider.{name}': expected an array of strings.", f"provider.{name}"
            )
    sort = prefs.get("sort")
    if isinstance(sort, dict):
        sort = sort.get("by")
    if sort is not None and (not isinstance(sort, str) or sort not in ("price", "throughput", "latency")):
        raise invalid_request("'provider.sort' must be 'price', 'throughput' or 'latency'.", "provider.sort")
    if prefs.get("allow_fallbacks") is not None and not isinstance(prefs["allow_fallbacks"], bool):
        raise invalid_request(
            "Invalid type for 'provider.allow_fallbacks': expected a boolean.", "provider.allow_fallbacks"
        )
    max_price = prefs.get("max_price")
    if max_price is not None:
        if not isinstance(max_price, dict):
            raise invalid_request("Invalid type for 'provider.max_price': expected an object.", "provider.max_price")
        limits = {}
        for name in ("prompt", "completion"):
            value = max_price.get(name)
            if value is None:
                continue
            if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value < float("inf"):
                param = f"provider.max_price.{name}"
                raise invalid_request(f"'{param}' must be a non-negative number.", param)
            limits[name] = value
        prefs = {**prefs, "max_price": limits}
    return {**prefs, "sort": sort}


def _offerings(model: Model, prefs: dict[str, Any]) -> list[Offering]:
    offerings = list(model.serving())  # an offering past its retirement date is refused by its provider
    only, ignore = prefs.get("only"), set(prefs.get("ignore") or ())
    offerings = [o for o in offerings if (only is None or o.provider in only) and o.provider not in ignore]
    max_price = prefs.get("max_price")
    if isinstance(max_price, dict):
        limit_in = Decimal(str(max_price.get("prompt", "Infinity")))
        limit_out = Decimal(str(max_price.get("completion", "Infinity")))
        offerings = [o for o in offerings if o.price.input <= limit_in and o.price.output <= limit_out]
    if prefs.get("sort") == "price":
        offerings.sort(key=lambda o: o.price.input + o.price.output)
    elif prefs.get("sort") in ("throughput", "latency"):
        offerings.sort(key=lambda o: catalog().providers[o.provider].speed_rank)
    order = prefs.get("order")
    if order:
        ranked = [o for p in order for o in offerings if o.provider == p]
        rest = [o for o in offerings if o.provider not in order]
        offerings = ranked + ([] if prefs.get("allow_fallbacks") is False else rest)
    return offerings


def _excluding(models: list[Model], prefs: dict[str, Any]) -> str | None:
    """The routing preference that leaves no offering of any model (a 400: no retry can help), if one does."""
    if not prefs or not any(m.offerings for m in models) or any(_offerings(m, prefs) for m in models):
        return None
    for name in ("only", "ignore", "max_price", "order"):
        if prefs.get(name) and any(_offerings(m, {k: v for k, v in prefs.items() if k != name}) for m in models):
            return f"provider.{name}"
    return "provider"


def _usable(cat: Catalog, models: Iterable[Model], prefs: dict[str, Any]) -> tuple[list[Candidate], bool]:
    """Candidates that can be called now, and whether any were skipped only for being busy."""
    found: list[Candidate] = []
    busy = False
    for model in models:
        for offering in _offerings(model, prefs):
            provider = cat.providers[offering.provider]
            adapter = registry.adapter(provider)
            if adapter is None:
                continue
            if not health.ready(provider, offering.upstream_model):
                busy = True
                continue
            found.append(Candidate(model, provider, offering, adapter))
    return found, busy


def _named(cat: Catalog, body: dict[str, Any]) -> list[Model]:
    """The requested model and its `models` fallbacks, in order."""
    names: list[Any] = [body["model"]]
    extra = body.get("models")
    if extra is not None:
        if not isinstance(extra, list):
            raise invalid_request("Invalid type for 'models': expected an array of model ids.", "models")
        for i, name in enumerate(extra):
            if not isinstance(name, str) or not name.strip():
                raise invalid_request(f"Invalid value for 'models[{i}]': expected a model id.", f"models[{i}]")
        names += [m for m in extra if m != body["model"]]
    models = []
    for i, name in enumerate(names):
        model = cat.find(name)
        if model is None:
            raise model_not_found(name, "model" if i == 0 else "models")
        if model not in models:
            models.append(model)
    return models


def _auto(cat: Catalog, body: dict[str, Any], allowed: Any) -> list[Model]:
    needs = Needs.of(body)
    fitting = [m for m in cat.models.values() if allowed(m.id) and needs.met_by(m)]
    if not fitting:
        raise invalid_request(
            "No model fits this request (its context length, tools or images).", "model", "no_model_fits"
        )
    served = [m for m in fitting if any(registry.available(cat.providers[o.provider]) for o in m.offerings)]
    served.sort(key=lambda m: (m.intelligence_rank or 1000, m.speed_rank or 1000))
    return served[:AUTO_MODELS] or fitting[:AUTO_MODELS]


def by_model_id(number: Any) -> str:
    """The unified API's numeric `model_id` as a model name; None means automatic choice."""
    if number is None:
        return AUTO
    if isinstance(number, float) and number.is_integer():
        number = int(number)  # 3.0 is the integer 3, as JSON Schema reads it
    if not isinstance(number, int) or isinstance(number, bool):
        raise invalid_request("Invalid type for 'model_id': expected an integer or null.", "model_id")
    for model in catalog().models.values():
        if model.model_id == number:
            return model.id
    shown = number if number.bit_length() <= 64 else "so large"
    raise GatewayError(404, f"No model has model_id {shown}.", param="model_id", code="model_not_found")


def resolve(body: dict[str, Any], allowed: Any = lambda model_id: True) -> list[Candidate]:
    """Ordered candidates for the request; 404 for an unknown model, 503 when none can serve now."""
    cat = catalog()
    prefs = _preferences(body)
    auto = body["model"] == AUTO
    models = _auto(cat, body, allowed) if auto else _named(cat, body)
    if not auto:
        refused = [m for m in models if not allowed(m.id)]
        if refused and refused[0] is models[0]:
            raise GatewayError(
                403,
                f"The model `{models[0].id}` is not included in this key's plan.",
                type="permission_error",
                param="model",
                code="model_not_allowed",
            )
        models = [m for m in models if allowed(m.id)]
    found, busy = _usable(cat, models, prefs)
    if not found:
        names = ", ".join(f"`{m.id}`" for m in models)
        if all(m.offerings and not m.serving() for m in models):
            retired = max(o.retirement for m in models for o in m.offerings if o.retirement)
            raise GatewayError(
                404,
                f"{names} was retired by its providers on {retired.isoformat()}; choose a current model "
                "(GET /v1/models lists them).",
                param="model",
                code="model_retired",
            )
        excluding = _excluding(models, prefs)
        if excluding:
            raise invalid_request(
                f"'{excluding}' leaves no provider of {names} to route to; relax it or choose another model.",
                excluding,
                "no_provider_matches",
            )
        deployments = [(cat.providers[o.provider], o.upstream_model) for m in models for o in m.offerings]
        if busy:
            raise service_unavailable(
                f"Every provider for {names} is cooling down or at its rate limit right now.",
                retry_after=health.retry_after(deployments),
            )
        raise service_unavailable(f"No provider for {names} is configured on this gateway.", retry_after=60)
    return found
