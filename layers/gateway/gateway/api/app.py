"""The app factory: each Lambda builds an app from only the routers it serves, so it imports only those.

The gateway's OpenAPI document covers every router (`openapi_document`), while each function's
app keeps FastAPI's own document off: the models function serves the whole one, public, at
/openapi.json with a page at /docs (api/docs.py).
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request

from gateway.api.middleware import Cors, RequestId
from gateway.api.replies import JSON, error_response
from gateway.errors import GatewayError
from gateway.telemetry import logger as log


def _http_exception(request: Request, exc: Exception) -> JSON:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"Invalid URL ({request.method} {request.url.path})."
        code = "not_found"
    elif exc.status_code == 405:
        message = f"Method {request.method} is not allowed for {request.url.path}."
        code = "method_not_allowed"
    else:
        message, code = str(exc.detail), None
    return error_response(GatewayError(exc.status_code, message, code=code, headers=exc.headers), request.url.path)


def _gateway_error(request: Request, exc: Exception) -> JSON:
    assert isinstance(exc, GatewayError)
    if exc.status < 500:  # refusals before an upstream call; the chat service logs the rest itself
        log.info(
            "request refused",
            extra={
                "status": exc.status,
                "code": exc.code,
                "path": request.url.path,
                "request_id": request.scope.get("state", {}).get("request_id"),
            },
        )
    return error_response(exc, request.url.path)


def _validation_error(request: Request, exc: Exception) -> JSON:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
    return error_response(GatewayError(400, str(first.get("msg", "Invalid request.")), param=param), request.url.path)


def create_app(*areas: APIRouter, title: str = "LLM gateway") -> FastAPI:
    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None)
    app.add_exception_handler(HTTPException, _http_exception)
    app.add_exception_handler(GatewayError, _gateway_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    for area in areas:
        app.include_router(area)
    # RequestId also answers what no handler here can: a failing account store on any route (a 503
    # told by module, so apps that never load botocore do not import it) and a caller who hung up.
    app.add_middleware(RequestId)
    origin = os.environ.get("CORS_ALLOW_ORIGIN")
    if origin:
        app.add_middleware(Cors, origin=origin)
    return app


def chat_app() -> FastAPI:
    """Also the Lambda Web Adapter's SnapStart hook routes, where its environment names them (api/snapstart.py)."""
    from gateway.api import chat, messages, responses, snapstart

    areas = (chat.router, messages.router, responses.router, snapstart.hooks_router())
    return create_app(*areas, title="LLM gateway: chat")


def models_app() -> FastAPI:
    """Public and cheap (no key, no database read): the models, the playground page and the API's document."""
    from gateway.api import docs, models, playground

    return create_app(models.router, playground.router, docs.router, title="LLM gateway: models")


def stats_app() -> FastAPI:
    from gateway.api import stats

    return create_app(stats.router, title="LLM gateway: stats")


def routers() -> tuple[APIRouter, ...]:
    """Every router of the API, each once: what the local app serves and the OpenAPI document describes."""
    from gateway.api import chat, docs, messages, models, playground, responses, stats

    return (
        chat.router,
        messages.router,
        responses.router,
        models.router,
        stats.router,
        playground.router,
        docs.router,
    )


def openapi_document() -> dict[str, Any]:
    """Every route's OpenAPI description; `make openapi` writes it where api/docs.py serves it from."""
    from fastapi.openapi.utils import get_openapi

    description = (
        "OpenAI's chat completions and Responses, Anthropic's Messages, and the gateway's own routes "
        "(models, key, credits, statistics, generations) on every catalog model. Authenticate with "
        "`Authorization: Bearer sk-...` or `x-api-key: sk-...`."
    )
    routes = [route for area in routers() for route in area.routes]
    return get_openapi(title="LLM gateway", version="1", description=description, routes=routes)


def write_openapi_document() -> None:
    """`make openapi`: the document, where the models function serves it from (api/docs.py)."""
    import json

    from gateway.api.docs import DOCUMENT

    DOCUMENT.write_text(json.dumps(openapi_document(), indent=1) + "\n")
