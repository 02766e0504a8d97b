"""A fast fake OpenAI-compatible upstream for the benchmark: fixed latency, fixed gaps between chunks.

A raw ASGI app (no framework, so the upstream's own cost stays small and constant) served by
uvicorn in its own process:

    POST /v1/chat/completions   waits LATENCY, then answers whole; or, with "stream": true,
                                sends CHUNKS content chunks GAP apart, a finish chunk one GAP
                                later, then a usage chunk (when asked) and `data: [DONE]`.
    GET  /health                200, for the launcher's readiness check.
    GET  /__bench/records       for each request whose body had a `bench_id`: when the app got it,
                                sent its first chunk and its last (perf_counter, CLOCK_MONOTONIC,
                                the same clock as the other processes'); then forgets them.

    .venv/bin/python -m bench.fake_upstream --port 9101 --latency-ms 20 --chunks 8 --gap-ms 5
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

import orjson

PROMPT_TOKENS = 12
WORDS = ("Hello", " from", " the", " fake", " upstream", " of", " the", " gateway", " benchmark", ".")


class FakeUpstream:
    def __init__(self, latency: float, chunks: int, gap: float) -> None:
        self.latency = latency
        self.chunks = chunks
        self.gap = gap
        self.pieces = [WORDS[i % len(WORDS)] for i in range(chunks)]
        self.text = "".join(self.pieces)
        self.records: dict[str, tuple[float, float, float]] = {}  # bench_id -> perf_counter times

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        t_call = time.perf_counter()
        path = scope["path"]
        if path == "/health":
            await self._json(send, 200, b'{"ok":true}')
            return
        if path == "/__bench/records":
            records, self.records = self.records, {}
            await self._json(send, 200, orjson.dumps(records))
            return
        if not path.endswith("/chat/completions") or scope["method"] != "POST":
            await self._json(send, 404, b'{"error":{"message":"not found","type":"invalid_request_error"}}')
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        body = orjson.loads(raw)
        model = body.get("model", "bench-upstream")
        await asyncio.sleep(max(t_call + self.latency - time.perf_counter(), 0))
        if body.get("stream") is True:
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            t_first = await self._stream(send, model, include_usage)
        else:
            t_first = time.perf_counter()
            await self._json(send, 200, orjson.dumps(self._whole(model)))
        bench_id = body.get("bench_id")
        if isinstance(bench_id, str):  # when the app saw the request, sent its first chunk, and its last
            self.records[bench_id] = (t_call, t_first, time.perf_counter())

    def _usage(self) -> dict:
        completion = len(self.pieces)
        return {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": completion,
            "total_tokens": PROMPT_TOKENS + completion,
        }

    def _whole(self, model: str) -> dict:
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": self.text},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": self._usage(),
        }

    async def _json(self, send, status: int, payload: bytes) -> None:  # type: ignore[no-untyped-def]
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _stream(self, send, model: str, include_usage: bool) -> float:  # type: ignore[no-untyped-def]
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk", "created": int(time.time())}
        head["model"] = model

        def event(choices: list, **extra: object) -> bytes:
            return b"data: " + orjson.dumps({**head, "choices": choices, **extra}) + b"\n\n"

        # Sleep to absolute deadlines, so the gaps do not drift with the server's own work.
        start = time.perf_counter()
        first = start
        for i, piece in enumerate(self.pieces):
            if i:
                await asyncio.sleep(max(start + i * self.gap - time.perf_counter(), 0))
            delta = {"role": "assistant", "content": piece} if i == 0 else {"content": piece}
            chunk = event([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}])
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if i == 0:
                first = time.perf_counter()
        await asyncio.sleep(max(start + len(self.pieces) * self.gap - time.perf_counter(), 0))
        tail = event([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}])
        if include_usage:
            tail += event([], usage=self._usage())
        tail += b"data: [DONE]\n\n"
        await send({"type": "http.response.body", "body": tail, "more_body": False})
        return first


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=20.0, help="wait before the answer or the first chunk")
    parser.add_argument("--chunks", type=int, default=8, help="content chunks in a stream")
    parser.add_argument("--gap-ms", type=float, default=5.0, help="gap between stream chunks")
    args = parser.parse_args(argv)
    import uvicorn

    app = FakeUpstream(args.latency_ms / 1000, args.chunks, args.gap_ms / 1000)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        timeout_keep_alive=300,
        backlog=4096,
    )


if __name__ == "__main__":
    main()
