"""GET /playground: the browser playground and account page, and GET / pointing browsers at it.

The page is static: gateway/playground/ holds its HTML, CSS and vanilla JavaScript, with no
build step and nothing fetched from elsewhere. It is assembled once per process into one HTML
response (style and script inline), so a browser needs one request, one Lambda invocation when
deployed, to get it. The page then calls only the public API with the key the person pastes:
GET /v1/models, POST /v1/chat/completions, GET /v1/key and GET /v1/stats, the same endpoints
and the same bearer key any client uses. It lives beside the API (same origin), so it needs no
CORS; its Content-Security-Policy lets it talk to its own origin only, which keeps a key held
in the tab's sessionStorage from being sent anywhere else.

The page finds the API relative to its own address, so it works at /playground locally and at
/STAGE/playground behind API Gateway, where the stage is part of the path.
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gateway import caches

PAGE_DIR = Path(__file__).resolve().parent.parent / "playground"
PAGE_PATH = "/playground"

router = APIRouter(tags=["pages"])


def csp_hash(text: str) -> str:
    """A Content-Security-Policy source for exactly this inline text."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


@caches.resettable
@lru_cache(maxsize=1)
def page() -> tuple[bytes, dict[str, str]]:
    """The page with its style and script inline, and the headers that go with it."""
    html = (PAGE_DIR / "index.html").read_text(encoding="utf-8")
    css = (PAGE_DIR / "playground.css").read_text(encoding="utf-8")
    js = (PAGE_DIR / "playground.js").read_text(encoding="utf-8")
    if "</style" in css.lower() or "</script" in js.lower():
        raise ValueError("the playground's CSS or JavaScript would close its inline tag early")
    html = html.replace("<!-- playground.css -->", f"<style>{css}</style>", 1)
    html = html.replace("<!-- playground.js -->", f"<script>{js}</script>", 1)
    csp = "; ".join(
        [
            "default-src 'none'",
            f"script-src {csp_hash(js)}",
            f"style-src {csp_hash(css)}",
            "connect-src 'self'",  # the key goes to this gateway and nowhere else
            "img-src 'self' data:",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )
    headers = {
        "content-security-policy": csp,
        "cache-control": "public, max-age=300",
        "referrer-policy": "no-referrer",
        "x-content-type-options": "nosniff",
        "x-frame-options": "DENY",
    }
    return html.encode("utf-8"), headers


def base_path(request: Request) -> str:
    """The path prefix in front of the app's own paths: the stage ("/api") behind API Gateway, else ""."""
    event = request.scope.get("aws.event")
    if isinstance(event, dict):
        full = str((event.get("requestContext") or {}).get("path") or "")  # with the stage: /api/playground
        own = request.url.path  # without it: /playground
        if full and own == "/":
            return full.rstrip("/")  # /api or /api/
        if full and full.endswith(own):
            return full[: len(full) - len(own)].rstrip("/")
    return str(request.scope.get("root_path") or "").rstrip("/")


@router.get(PAGE_PATH, summary="The browser playground and account page", response_class=Response)
@router.get(PAGE_PATH + "/", include_in_schema=False)
async def playground() -> Response:
    body, headers = page()
    return Response(body, media_type="text/html; charset=utf-8", headers=headers)


@router.get("/", summary="Redirects browsers to the playground", status_code=302, response_class=RedirectResponse)
async def root(request: Request) -> Response:
    """Browsers that open the base URL land on the playground; API clients never call /."""
    return RedirectResponse(base_path(request) + PAGE_PATH, status_code=302)
