"""The adapter for every upstream that speaks OpenAI's chat completions protocol.

Connections are pooled (providers/http.py). The body goes upstream exactly as chat/egress.py
made it (the client's, unknown fields included, with the model name swapped, one output
limit, and usage requested on streams so that every stream can be billed): the bytes sent
are the bytes the reservation counted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from gateway.providers import http
from gateway.upstream import UpstreamConnectError, UpstreamError, UpstreamHTTPError, UpstreamLost


class OpenAICompatible:
    def __init__(self, base_url: str, api_key: str | None, provider: str) -> None:
        self.url = f"{base_url}/chat/completions"
        self.provider = provider
        self.headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
        if api_key:
            self.headers["authorization"] = f"Bearer {api_key}"

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        data = await http.post_json(self.url, body, self.headers, self.provider)
        choices = data.get("choices") if isinstance(data, dict) else None
        if not isinstance(choices, list) or not all(
            isinstance(c, dict) and isinstance(c.get("message"), dict) for c in choices
        ):
            raise UpstreamLost(f"{self.provider} returned a response without well-formed choices")
        return data

    async def stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        response = await http.send(self.url, body, self.headers, self.provider, stream=True)
        finished = False  # some servers end without [DONE]; a stream that gave a finish_reason is whole
        async with http.reading(response, self.provider):
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
                        f"{self.provider} failed mid-stream: {http.error_message(orjson.dumps(chunk), 500)}"
                    )
                finished = finished or any(c.get("finish_reason") for c in chunk.get("choices") or ())
                yield chunk
        if not finished:
            raise UpstreamConnectError(f"{self.provider} ended the stream before it was complete")
