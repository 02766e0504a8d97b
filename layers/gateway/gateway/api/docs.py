"""GET /openapi.json and GET /docs: the gateway's own OpenAPI document, every route, and a page to read it.

Served by the models function (public, like the model list). The document is built from every
router (`app.openapi_document()`) when the API changes, not in Lambda: `make openapi` writes it to
gateway/openapi.json and a test fails while the file differs. So the models function imports no
other function's routes to serve it; each request adds only its `servers` entry, the stage in
front of the paths.

The page is rendered here from the document, with no script at all: it shares its origin with the
playground, which keeps a key in the tab's sessionStorage, so like the playground it loads nothing
from elsewhere (Swagger UI would come from a CDN) and its Content-Security-Policy allows nothing else.
"""

from __future__ import annotations

from functools import lru_cache
from html import escape
from pathlib import Path
from typing import Any

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from gateway import caches
from gateway.api.playground import base_path, csp_hash
from gateway.api.replies import JSON

DOCUMENT = Path(__file__).resolve().parent.parent / "openapi.json"

router = APIRouter(tags=["documentation"])


@caches.resettable
@lru_cache(maxsize=1)
def document() -> dict[str, Any]:
    return orjson.loads(DOCUMENT.read_bytes())


@router.get("/openapi.json", summary="This document")
async def openapi(request: Request) -> Response:
    return JSON({**document(), "servers": [{"url": base_path(request) or "/"}]})


STYLE = (
    "body{font:15px/1.5 system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;color:#1d1d1f}"
    "table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.35rem .6rem;border-bottom:1px solid #ddd;"
    "vertical-align:top}code{font-size:.95em}th{background:#f5f5f7}"
)


def _row(path: str, method: str, operation: dict[str, Any]) -> str:
    parameters = ", ".join(p["name"] for p in operation.get("parameters", []) if p.get("in") == "query")
    body = operation.get("requestBody", {}).get("description") or (
        "a JSON object" if "requestBody" in operation else ""
    )
    cells = (
        method.upper(),
        f"<code>{escape(path)}</code>",
        escape(operation.get("summary", "")),
        "key" if operation.get("security") else "public",
        escape(", ".join(filter(None, [parameters and f"query: {parameters}", body]))),
    )
    return "<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"


@caches.resettable
@lru_cache(maxsize=1)
def page() -> tuple[bytes, dict[str, str]]:
    """Every route of the document in one table, and the headers that keep the page to itself."""
    doc = document()
    rows = "".join(_row(path, method, op) for path, ops in doc["paths"].items() for method, op in ops.items())
    title = escape(doc["info"]["title"])
    html = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}: API</title>'
        f"<style>{STYLE}</style></head><body><h1>{title}</h1><p>{escape(doc['info'].get('description', ''))}</p>"
        '<p>The whole document, for code generators and API clients: <a href="openapi.json">openapi.json</a>.</p>'
        "<table><thead><tr><th>method</th><th>path</th><th>what</th><th>auth</th><th>takes</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></body></html>"
    )
    csp = (
        f"default-src 'none'; style-src {csp_hash(STYLE)}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return html.encode(), {
        "content-security-policy": csp,
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
    }


@router.get(
    "/docs", summary="The document as a page: every route, what it does, what it takes", response_class=HTMLResponse
)
async def docs() -> Response:
    body, headers = page()
    return HTMLResponse(body, headers=headers)
