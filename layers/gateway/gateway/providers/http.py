"""HTTP to upstream providers: one pooled client per event loop, and failures named the router's way.

Every HTTP adapter (OpenAI-compatible, Anthropic) sends through here, so a timeout, a
refused connection or an error status means the same thing whichever protocol it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from gateway import caches
from gateway.config import settings
from gateway.errors import scrub
from gateway.upstream import (
    UpstreamConnectError,
    UpstreamHTTPError,
    UpstreamLost,
    UpstreamTimeout,
)

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = weakref.WeakKeyDictionary()
# Forgotten, not closed: a request in flight keeps its client; the idle connections close with it.
caches.register(_clients.clear, f"{__name__}._clients")


def http_client() -> httpx.AsyncClient:
    """The pooled client of the running loop (tests run several servers, each on its own loop)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        cfg = settings()
        client = httpx.AsyncClient(
            timeout=httpx.Timeout(cfg.upstream_timeout, connect=cfg.upstream_connect_timeout),
            limits=httpx.Limits(max_connections=512, max_keepalive_connections=128, keepalive_expiry=60),
            follow_redirects=False,
        )
        _clients[loop] = client
    return client


def error_message(content: bytes, status: int) -> str:
    """The provider's own words for an error, whatever shape its error body has, minus any credential."""
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        error = data.get("error", data)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return scrub(error["message"])
        if isinstance(error, str):
            return scrub(error)
    text = content.decode(errors="replace").strip()[:500]
    return scrub(text) or f"HTTP {status}"


def retry_after(headers: httpx.Headers) -> float | None:
    try:
        return float(headers["retry-after"]) if "retry-after" in headers else None
    except ValueError:
        return None


# Transport failures before the request reached the provider: nothing it could bill.
UNSENT = (httpx.ConnectError, httpx.WriteError, httpx.UnsupportedProtocol, httpx.ProxyError)


async def send(
    url: str, payload: dict[str, Any], headers: dict[str, str], provider: str, stream: bool
) -> httpx.Response:
    """POST the payload; an error status, a timeout or a transport failure becomes an UpstreamError."""
    client = http_client()
    try:
        content = orjson.dumps(payload)
    except TypeError as exc:  # nothing the gateway accepted should do this; a 400 rather than a 500 if it does
        raise UpstreamHTTPError(f"{provider} cannot be sent this request: {exc}", status=400) from exc
    request = client.build_request("POST", url, content=content, headers=headers)
    try:
        response = await client.send(request, stream=stream)
    except httpx.TimeoutException as exc:
        sent = not isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout)
        raise UpstreamTimeout(f"{provider} timed out", sent=sent) from exc
    except UNSENT as exc:
        raise UpstreamConnectError(f"{provider} could not be reached: {type(exc).__name__}") from exc
    except httpx.TransportError as exc:  # the request went out; its answer did not come back
        raise UpstreamLost(f"{provider} dropped the connection: {type(exc).__name__}") from exc
    if response.status_code >= 400:
        content = await response.aread()
        await response.aclose()
        raise UpstreamHTTPError(
            f"{provider} returned HTTP {response.status_code}: {error_message(content, response.status_code)}",
            status=response.status_code,
            retry_after=retry_after(response.headers),
        )
    return response


async def post_json(url: str, payload: dict[str, Any], headers: dict[str, str], provider: str) -> Any:
    """POST and return the parsed JSON answer, all of it within the upstream timeout."""
    try:
        async with asyncio.timeout(settings().upstream_timeout):
            response = await send(url, payload, headers, provider, stream=False)
            content = await response.aread()
    except (TimeoutError, httpx.TimeoutException) as exc:  # asked and not answered in time: maybe billed
        raise UpstreamTimeout(f"{provider} timed out") from exc
    except httpx.TransportError as exc:  # send() raised none: the answer was arriving
        raise UpstreamLost(f"{provider} dropped the connection") from exc
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        raise UpstreamLost(f"{provider} returned a response that is not JSON") from exc


@contextlib.asynccontextmanager
async def reading(response: httpx.Response, provider: str) -> AsyncIterator[httpx.Response]:
    """Read a streamed response: a stall or a cut connection becomes the upstream error it is, and the
    response is closed however reading ends (a client that hangs up included)."""
    try:
        yield response
    except httpx.TimeoutException as exc:
        raise UpstreamTimeout(f"{provider} stopped sending") from exc
    except httpx.TransportError as exc:
        raise UpstreamConnectError(f"{provider} cut the stream") from exc
    finally:
        await response.aclose()
