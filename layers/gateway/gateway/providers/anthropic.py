"""Anthropic's Messages API over HTTP: the provider adapter; the translation lives in gateway/wire/anthropic/."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from gateway.providers import http
from gateway.upstream import UpstreamConnectError, UpstreamError
from gateway.wire.anthropic.answer import from_anthropic
from gateway.wire.anthropic.request_out import to_anthropic
from gateway.wire.anthropic.stream import Reader, error_of, read_events

ANTHROPIC_VERSION = "2023-06-01"


class Anthropic:
    def __init__(self, base_url: str, api_key: str | None, provider: str) -> None:
        self.url = f"{base_url.rstrip('/')}/messages"
        self.provider = provider
        self.headers = {
            "content-type": "application/json",
            "accept": "application/json, text/event-stream",
            "anthropic-version": ANTHROPIC_VERSION,
        }
        if api_key:
            self.headers["x-api-key"] = api_key

    def _headers(self, body: dict[str, Any]) -> dict[str, str]:
        """The headers, with the caller's betas that the Messages ingress forwards (wire/toolkit.py)."""
        beta = body.get("anthropic_beta")
        return {**self.headers, "anthropic-beta": ",".join(beta)} if beta else self.headers

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        data = await http.post_json(self.url, to_anthropic(body, self.provider), self._headers(body), self.provider)
        if isinstance(data, dict) and data.get("type") == "error":  # an error with a 200 status
            raise error_of(data, self.provider)
        if not isinstance(data, dict) or not isinstance(data.get("content"), list):
            raise UpstreamError(f"{self.provider} returned a response without content")
        return from_anthropic(data, body.get("model"))

    async def stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        payload = {**to_anthropic(body, self.provider), "stream": True}
        response = await http.send(self.url, payload, self._headers(body), self.provider, stream=True)
        state = Reader(body.get("model"))
        async with http.reading(response, self.provider):
            async for event in read_events(response, self.provider):
                if event.get("type") == "error":
                    raise error_of(event, self.provider)
                for chunk in state.feed(event):
                    yield chunk
                if state.done:
                    return
        raise UpstreamConnectError(f"{self.provider} ended the stream before message_stop")
