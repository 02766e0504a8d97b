"""More real servers for tests of what several gateway instances share: gateway subprocesses on
the session's DynamoDB, and an upstream whose answers wait at a gate the test opens, so the
number of requests in flight at once is exact rather than a matter of timing."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from fake_upstream import ServerThread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from bench import processes

GATE_LIMIT = 20.0  # seconds a request may wait at a closed gate


class GateUpstream:
    """An OpenAI-compatible upstream: `ok` answers once the gate is open, `error-500` fails at once."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.lock = threading.Lock()
        self.arrived: list[dict[str, Any]] = []
        app = Starlette(routes=[Route("/{prefix}/v1/chat/completions", self.chat, methods=["POST"])])
        self.server = ServerThread(app, name="gate-upstream")

    def start(self) -> GateUpstream:
        self.server.start()
        return self

    def stop(self) -> None:
        self.gate.set()
        self.server.stop()

    def url(self, prefix: str) -> str:
        return f"{self.server.url}/{prefix}/v1"

    def count(self, marker: str) -> int:
        with self.lock:
            return sum(1 for body in self.arrived if marker in json.dumps(body))

    async def chat(self, request: Request) -> Response:
        import asyncio

        body = await request.json()
        with self.lock:
            self.arrived.append({**body, "_prefix": request.path_params["prefix"]})
        if body["model"] == "error-500":
            return JSONResponse({"error": {"message": "gate upstream: broken", "type": "server_error"}}, 500)
        deadline = time.monotonic() + GATE_LIMIT
        while not self.gate.is_set() and time.monotonic() < deadline:  # noqa: ASYNC110 - a thread's Event
            await asyncio.sleep(0.01)
        usage = {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}
        head = {"id": "gate", "created": int(time.time()), "model": body["model"]}
        if not body.get("stream"):
            message = {"role": "assistant", "content": "gate ok"}
            choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
            return JSONResponse({**head, "object": "chat.completion", "choices": [choice], "usage": usage})

        async def events() -> Any:
            chunk = {**head, "object": "chat.completion.chunk"}
            for delta, finish in (({"role": "assistant", "content": "gate"}, None), ({"content": " ok"}, "stop")):
                choice = {"index": 0, "delta": delta, "finish_reason": finish}
                yield f"data: {json.dumps({**chunk, 'choices': [choice]})}\n\n"
            yield f"data: {json.dumps({**chunk, 'choices': [], 'usage': usage})}\n\ndata: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SERVE = "import sys, uvicorn; from gateway.api.app import local_app; uvicorn.run(local_app(), host='127.0.0.1', port=int(sys.argv[1]), log_level='warning', access_log=False)"  # noqa: E501


@contextmanager
def gateway_process(env: dict[str, str], log: Path) -> Iterator[str]:
    """A whole gateway in its own process (its own caches, its own event loop); yields its /v1 URL."""
    port = free_port()
    full_env = {**os.environ, **env, "POWERTOOLS_METRICS_DISABLED": "true"}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", SERVE, str(port)], env=full_env, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/models", timeout=1, trust_env=False).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gateway process did not start: {log.read_text()[-2000:]}")
            time.sleep(0.05)
        yield url
    finally:
        processes.stop(proc, timeout=5)
