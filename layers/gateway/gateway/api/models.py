"""GET /v1/models and GET /v1/models/{model}: the catalog as OpenAI model objects, plus its own fields.

The list is public, like OpenRouter's: it costs no database read and lets a pricing page or
the playground show models before a key is pasted.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.api.responses import JSON
from gateway.errors import model_not_found
from gateway.providers import registry
from gateway.routing.catalog import Model, catalog


def model_object(model: Model) -> dict[str, Any]:
    providers = catalog().providers
    offerings = [
        {
            "provider": o.provider,
            "upstream_model": o.upstream_model,
            "available": registry.available(providers[o.provider]),
            "pricing": {"input": str(o.price.input), "output": str(o.price.output)},
        }
        for o in model.offerings
    ]
    return {
        "id": model.id,
        "object": "model",
        "created": model.created,
        "owned_by": model.owned_by,
        "name": model.display_name or model.id,
        "aliases": list(model.aliases),
        "context_length": model.context_length,
        "max_output_tokens": model.max_output_tokens,
        "pricing": {
            "input": str(model.price.input),
            "output": str(model.price.output),
            "unit": "USD per 1M tokens",
        },
        "input_modalities": list(model.input_modalities),
        "supports_tools": model.supports_tools,
        "available": any(o["available"] for o in offerings),
        "providers": offerings,
    }


async def list_models(request: Request) -> Response:
    return JSON({"object": "list", "data": [model_object(m) for m in catalog().models.values()]})


async def retrieve_model(request: Request) -> Response:
    name = request.path_params["model"]
    model = catalog().find(name)
    if model is None:
        raise model_not_found(name)
    return JSON(model_object(model))


routes = [
    Route("/v1/models", list_models, methods=["GET"]),
    Route("/v1/models/{model:path}", retrieve_model, methods=["GET"]),
]
