"""A recording pass-through in front of the gateway: the access log of what each agent sent and got.

gateway-local keeps uvicorn's access log off and logs only admitted requests, so a request the
gateway refuses at validation would leave no trace. The agents are pointed at this proxy
instead, which forwards every request to the gateway unchanged (streams chunk by chunk, never
buffered) and records the request (path, the headers that matter, body, size) and the answer's
status with its body (error bodies whole; a stream's first 256 KB, to find in-stream errors).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.support.servers import LoopbackApp

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host", "content-length"}
KEPT_HEADERS = ("anthropic-beta", "anthropic-version", "user-agent", "x-stainless-timeout", "x-stainless-retry-count")
KEPT_HEADERS += ("originator", "x-openai-internal-codex-responses-lite", "openai-beta", "x-codex-beta-features")
ANSWER_CAP = 256 * 1024


@dataclass
class Exchange:
    method: str
    path: str  # with the query string
    headers: dict[str, str]
    raw: bytes
    started: float = field(default_factory=time.time)
    status: int | None = None
    answer: bytearray = field(default_factory=bytearray)
    finished: bool = False
    answer_headers: dict[str, str] = field(default_factory=dict)  # the gateway's admission headers

    @property
    def body(self) -> Any:
        try:
            return json.loads(self.raw) if self.raw else None
        except ValueError:
            return None

    @property
    def answer_text(self) -> str:
        return self.answer.decode(errors="replace")

    @property
    def refused(self) -> bool:
        return self.status is None or self.status >= 400

    def stream_errors(self) -> list[str]:
        """Error events inside a 200 stream: Anthropic's `error` event, OpenAI's `data: {"error": ...}`,
        Responses' `error` and `response.failed` events."""
        found = []
        for line in self.answer_text.splitlines():
            if line.startswith("event:") and line.split(":", 1)[1].strip() in ("error", "response.failed"):
                found.append(line)
            if not line.startswith("data:"):
                continue
            try:
                event = json.loads(line[5:])
            except ValueError:
                continue
            if not isinstance(event, dict):
                continue
            if event.get("type") in ("error", "response.failed") or ("type" not in event and event.get("error")):
                found.append(line[:2000])
        return found


class RecordingProxy(LoopbackApp):
    name = "agents-proxy"

    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.exchanges: list[Exchange] = []
        self.lock = threading.Lock()
        self.client: httpx.AsyncClient | None = None
        self.app = Starlette(routes=[Route("/{path:path}", self._forward, methods=["GET", "POST", "DELETE", "PUT"])])

    def reset(self) -> None:
        with self.lock:
            self.exchanges = []

    def _client(self) -> httpx.AsyncClient:
        if self.client is None:  # made on the server's own event loop
            timeout = httpx.Timeout(connect=5, read=300, write=60, pool=30)
            self.client = httpx.AsyncClient(base_url=self.target, timeout=timeout, trust_env=False)
        return self.client

    async def _forward(self, request: Request) -> Response:
        raw = await request.body()
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        kept = {k: request.headers[k] for k in KEPT_HEADERS if k in request.headers}
        exchange = Exchange(method=request.method, path=path, headers=kept, raw=raw)
        with self.lock:
            self.exchanges.append(exchange)
        client = self._client()
        upstream = await client.send(
            client.build_request(request.method, path, headers=headers, content=raw), stream=True
        )
        exchange.status = upstream.status_code
        exchange.answer_headers = {
            k: v for k, v in upstream.headers.items() if k.startswith(("x-ratelimit-", "x-gateway-", "retry-after"))
        }
        out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}

        async def relay() -> AsyncIterator[bytes]:
            try:
                async for piece in upstream.aiter_raw():
                    if len(exchange.answer) < ANSWER_CAP:
                        exchange.answer += piece[: ANSWER_CAP - len(exchange.answer)]
                    yield piece
            finally:
                exchange.finished = True

        return StreamingResponse(
            relay(), status_code=upstream.status_code, headers=out_headers, background=BackgroundTask(upstream.aclose)
        )

    def summary(self) -> list[str]:
        lines = []
        for e in self.exchanges:
            body = e.body if isinstance(e.body, dict) else {}
            extra = f" stream={body.get('stream')}" if "stream" in body else ""
            lines.append(f"{e.method} {e.path} {len(e.raw)} B{extra} -> {e.status}")
        return lines
