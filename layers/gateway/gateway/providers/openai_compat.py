"""The adapter for every upstream that speaks OpenAI's chat completions protocol.

One pooled httpx client per event loop keeps connections warm across requests. The body
goes upstream as the client sent it (unknown fields included), with only the model name
swapped and usage requested on streams so that every stream can be billed.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from gateway.config import settings
from gateway.providers.base import UpstreamConnectError, UpstreamError, UpstreamHTTPError, UpstreamTimeout

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = weakref.WeakKeyDictionary()


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


def _error_message(content: bytes, status: int) -> str:
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        error = data.get("error", data)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"]
        if isinstance(error, str):
            return error
    text = content.decode(errors="replace").strip()[:500]
    return text or f"HTTP {status}"


def _retry_after(headers: httpx.Headers) -> float | None:
    try:
        return float(headers["retry-after"]) if "retry-after" in headers else None
    except ValueError:
        return None


class OpenAICompatible:
    def __init__(self, base_url: str, api_key: str | None, provider: str) -> None:
        self.url = f"{base_url}/chat/completions"
        self.provider = provider
        self.headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
        if api_key:
            self.headers["authorization"] = f"Bearer {api_key}"

    def _request(self, body: dict[str, Any]) -> httpx.Request:
        return http_client().build_request("POST", self.url, content=orjson.dumps(body), headers=self.headers)

    async def _send(self, body: dict[str, Any], stream: bool) -> httpx.Response:
        try:
            response = await http_client().send(self._request(body), stream=stream)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"{self.provider} timed out") from exc
        except httpx.TransportError as exc:
            raise UpstreamConnectError(f"{self.provider} could not be reached: {type(exc).__name__}") from exc
        if response.status_code >= 400:
            content = await response.aread()
            await response.aclose()
            raise UpstreamHTTPError(
                f"{self.provider} returned HTTP {response.status_code}: "
                f"{_error_message(content, response.status_code)}",
                status=response.status_code,
                retry_after=_retry_after(response.headers),
            )
        return response

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            async with asyncio.timeout(settings().upstream_timeout):
                response = await self._send(body, stream=False)
                content = await response.aread()
        except TimeoutError as exc:
            raise UpstreamTimeout(f"{self.provider} timed out") from exc
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"{self.provider} timed out") from exc
        except httpx.TransportError as exc:
            raise UpstreamConnectError(f"{self.provider} dropped the connection") from exc
        try:
            data = orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError(f"{self.provider} returned a response that is not JSON") from exc
        choices = data.get("choices") if isinstance(data, dict) else None
        if not isinstance(choices, list) or not all(
            isinstance(c, dict) and isinstance(c.get("message"), dict) for c in choices
        ):
            raise UpstreamError(f"{self.provider} returned a response without well-formed choices")
        return data

    async def stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        options = dict(body.get("stream_options") or {})
        options["include_usage"] = True
        response = await self._send({**body, "stream": True, "stream_options": options}, stream=True)
        finished = False  # some servers end without [DONE]; a stream that gave a finish_reason is whole
        try:
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue  # comments (": keep-alive"), event names, blank separators
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                try:
                    chunk = orjson.loads(data)
                except orjson.JSONDecodeError as exc:
                    raise UpstreamError(f"{self.provider} sent an event that is not JSON") from exc
                if not isinstance(chunk, dict) or not all(isinstance(c, dict) for c in chunk.get("choices") or ()):
                    raise UpstreamError(f"{self.provider} sent a malformed chunk")
                if "error" in chunk and not chunk.get("choices"):
                    raise UpstreamHTTPError(
                        f"{self.provider} failed mid-stream: {_error_message(orjson.dumps(chunk), 500)}"
                    )
                finished = finished or any(c.get("finish_reason") for c in chunk.get("choices") or ())
                yield chunk
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"{self.provider} stopped sending") from exc
        except httpx.TransportError as exc:
            raise UpstreamConnectError(f"{self.provider} cut the stream") from exc
        finally:
            await response.aclose()
        if not finished:
            raise UpstreamConnectError(f"{self.provider} ended the stream before it was complete")
