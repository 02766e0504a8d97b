"""Turning the requested model name into the ordered candidates that can serve it now."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.errors import model_not_found, service_unavailable
from gateway.providers import registry
from gateway.providers.base import Adapter
from gateway.routing.catalog import Model, Offering, Provider, catalog


@dataclass(frozen=True, slots=True)
class Candidate:
    model: Model
    provider: Provider
    offering: Offering
    adapter: Adapter


def candidates(name: str) -> tuple[Model, list[Candidate]]:
    """The model and its available offerings, in catalog order; 404 if unknown, 503 if none can serve."""
    model = catalog().find(name)
    if model is None:
        raise model_not_found(name)
    found = []
    for offering in model.offerings:
        provider = catalog().providers[offering.provider]
        adapter = registry.adapter(provider)
        if adapter is not None:
            found.append(Candidate(model, provider, offering, adapter))
    if not found:
        raise service_unavailable(
            f"No provider for `{model.id}` is configured on this gateway right now.", retry_after=60
        )
    return model, found
