"""GET /v1/models and GET /v1/models/{model}: the catalog as OpenAI model objects, plus its own fields.

The list is public, like OpenRouter's: it costs no database read and lets a pricing page or
the playground show models before a key is pasted. Whether a provider is configured comes from
`registry.configured`, which reads no provider key: this function's role may not read them.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from fastapi import APIRouter
from starlette.responses import Response

from gateway.api.replies import JSON
from gateway.catalog import MILLION, Model, Price, catalog, utc_today
from gateway.errors import model_not_found
from gateway.providers import registry

# What every model takes (wire/chat/request.py checks them all); tools only where the model calls them.
PARAMETERS = (
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "frequency_penalty",
    "presence_penalty",
    "seed",
    "n",
    "logit_bias",
    "response_format",
    "structured_outputs",
)
TOOL_PARAMETERS = ("tools", "tool_choice", "parallel_tool_calls")


def _per_token(price: Decimal) -> str:
    return format((price / MILLION).normalize(), "f")


def openrouter_pricing(price: Price) -> dict[str, str]:
    """OpenRouter's pricing object: USD per token, as strings (Roo Code and Kilo Code read these)."""
    pricing = {"prompt": _per_token(price.input), "completion": _per_token(price.output), "request": "0", "image": "0"}
    for name, value in (("input_cache_read", price.cache_read), ("input_cache_write", price.cache_write)):
        if value is not None:
            pricing[name] = _per_token(value)
    return pricing


def model_object(model: Model) -> dict[str, Any]:
    """An OpenAI model object, with OpenRouter's fields and ours beside it."""
    providers = catalog().providers
    today = utc_today()
    offerings = [
        {
            "provider": o.provider,
            "upstream_model": o.upstream_model,
            "available": registry.configured(providers[o.provider]) and not o.retired(today),
            "pricing": {"input": str(o.price.input), "output": str(o.price.output)},
            "limits": dict(providers[o.provider].limits),
            "deprecation_date": o.deprecation.isoformat() if o.deprecation else None,
            "retirement_date": o.retirement.isoformat() if o.retirement else None,
        }
        for o in model.offerings
    ]
    expiration = model.expiration()
    return {
        "id": model.id,
        "object": "model",
        "created": model.created,
        "owned_by": model.owned_by,
        "name": model.display_name or model.id,
        "aliases": list(model.aliases),
        "replaces": list(model.replaces),  # retired models it answers for
        "expiration_date": expiration.isoformat() if expiration else None,  # OpenRouter's: when it stops
        "context_length": model.context_length,
        "max_output_tokens": model.max_output_tokens,
        "pricing": {
            "input": str(model.price.input),
            "output": str(model.price.output),
            "unit": "USD per 1M tokens",
            **openrouter_pricing(model.price),
        },
        "architecture": {
            "modality": "+".join(model.input_modalities) + "->text",
            "input_modalities": list(model.input_modalities),
            "output_modalities": ["text"],
            "tokenizer": "Other",
        },
        "top_provider": {
            "context_length": model.context_length,
            "max_completion_tokens": model.max_output_tokens,
            "is_moderated": False,
        },
        "supported_parameters": [*PARAMETERS, *(TOOL_PARAMETERS if model.supports_tools else ())],
        "input_modalities": list(model.input_modalities),
        "supports_tools": model.supports_tools,
        "model_id": model.model_id,
        "intelligence_rank": model.intelligence_rank,
        "speed_rank": model.speed_rank,
        "size_label": model.size_label,
        "available": any(o["available"] for o in offerings),
        "providers": offerings,
    }


router = APIRouter(tags=["models"])


@router.get("/v1/models", summary="The catalog as OpenAI model objects, with prices, limits and providers")
@router.get("/v1/chat/models", summary="The same list, under shared/seeds/003's name")
async def list_models() -> Response:
    return JSON({"object": "list", "data": [model_object(m) for m in catalog().models.values()]})


@router.get("/v1/models/{model:path}", summary="One model object, by id or alias (ids may hold slashes)")
async def retrieve_model(model: str) -> Response:
    found = catalog().find(model)
    if found is None:
        raise model_not_found(model)
    return JSON(model_object(found))


@router.get("/models", summary="The unified API's model rows, by catalog number")
@router.get("/models.php", summary="The unified API's model rows, under their .php name")
async def unified_models() -> Response:
    """The unified API's GET /api/models(.php): a bare array, one row per catalog model, by its catalog number.

    `platform` and `model_id` name the offering that would serve it (the first whose provider is
    configured, else the first), and the limits are that provider's own; no database read.
    """
    providers = catalog().providers
    rows = []
    for model in catalog().models.values():
        usable = [o for o in model.offerings if registry.configured(providers[o.provider])]
        offering = (usable or list(model.offerings) or [None])[0]
        limits = providers[offering.provider].limits if offering else {}
        rows.append(
            {
                "id": model.model_id,
                "platform": offering.provider if offering else None,
                "model_id": offering.upstream_model if offering else None,
                "display_name": model.display_name or model.id,
                "intelligence_rank": model.intelligence_rank,
                "speed_rank": model.speed_rank,
                "size_label": model.size_label,
                "rpm_limit": limits.get("rpm"),
                "tpm_limit": limits.get("tpm"),
                "context_window": model.context_length,
                "enabled": bool(usable),
                "gateway_model": model.id,  # what `model` names on the OpenAI routes
            }
        )
    return JSON(rows)
