"""The app factory: each Lambda builds an app from only the routers it serves, so it imports only those."""

from __future__ import annotations

import os

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.routing import BaseRoute

from gateway.api.middleware import Cors, RequestId, StagePrefix
from gateway.api.responses import JSON, error_response
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


def create_app(*routes: list[BaseRoute], title: str = "LLM gateway") -> FastAPI:
    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None)
    app.add_exception_handler(HTTPException, _http_exception)
    app.add_exception_handler(GatewayError, _gateway_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    for group in routes:
        app.router.routes.extend(group)
    # RequestId also answers what no handler here can: a failing account store on any route (a 503
    # told by module, so apps that never load botocore do not import it) and a caller who hung up.
    app.add_middleware(RequestId)
    origin = os.environ.get("CORS_ALLOW_ORIGIN")
    if origin:
        app.add_middleware(Cors, origin=origin)
    return app


def chat_app() -> FastAPI:
    from gateway.api import chat, messages, responses_api

    return create_app(chat.routes, messages.routes, responses_api.routes, title="LLM gateway: chat")


def models_app() -> FastAPI:
    """Public and cheap (no key, no database read), so it also serves the playground page."""
    from gateway.api import models, playground

    return create_app(models.routes, playground.routes, title="LLM gateway: models")


def stats_app() -> FastAPI:
    from gateway.api import stats

    return create_app(stats.routes, title="LLM gateway: stats")


def local_app() -> FastAPI:
    """Every route in one app, for the local server and the end-to-end tests."""
    from gateway.api import chat, messages, models, playground, responses_api, stats

    app = create_app(chat.routes, messages.routes, responses_api.routes, models.routes, stats.routes, playground.routes)
    app.add_middleware(StagePrefix)
    return app
