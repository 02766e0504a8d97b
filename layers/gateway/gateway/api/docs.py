"""GET /openapi.json and GET /docs: the gateway's own OpenAPI document, every route, and a page to read it.

Served by the models function (public, like the model list). The document is built from every
router (`app.openapi_document()`) when the API changes, not in Lambda: `make openapi` writes it to
gateway/openapi.json and a test fails while the file differs. So the models function imports no
other function's routes to serve it; each request adds only its `servers` entry, the stage in
front of the paths.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson
from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from gateway import caches
from gateway.api.playground import base_path
from gateway.api.responses import JSON

DOCUMENT = Path(__file__).resolve().parent.parent / "openapi.json"

router = APIRouter(tags=["documentation"])


@caches.resettable
@lru_cache(maxsize=1)
def document() -> dict[str, Any]:
    return orjson.loads(DOCUMENT.read_bytes())


@router.get("/openapi.json", summary="This document")
async def openapi(request: Request) -> Response:
    return JSON({**document(), "servers": [{"url": base_path(request) or "/"}]})


@router.get("/docs", summary="The document as a page (Swagger UI)", response_class=HTMLResponse)
async def docs(request: Request) -> Response:
    return get_swagger_ui_html(openapi_url=base_path(request) + "/openapi.json", title=document()["info"]["title"])
