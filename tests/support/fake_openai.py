"""A fake OpenAI-compatible upstream provider, served by a real uvicorn server on 127.0.0.1.

What it does is chosen by the upstream model name it receives (the gateway's catalog maps its
own model ids onto these names):

    ok          an echo-like answer with usage (streamed as real SSE with small gaps)
    slow        like `ok`, after waiting SLOW_SECONDS before sending headers
    drip        like `ok`, but streamed with DRIP_GAP seconds between chunks
    long        a stream of LONG_CHUNKS chunks, long enough for a client to hang up mid-way
    error-500   HTTP 500 with an OpenAI error body
    error-429   HTTP 429 with Retry-After
    error-400   HTTP 400 with an OpenAI error body (a request the upstream refuses)
    error-leak  HTTP 400 whose error message quotes credentials (LEAKED_SECRETS), as careless servers do
    hang        never answers (until the caller hangs up)
    cut         streams a few chunks, then drops the connection without [DONE]
    stall       streams a few chunks, then goes silent (until the caller hangs up)
    error-mid   streams a few chunks, then sends `data: {"error": {...}}`
    no-usage    streams without a usage chunk, even when asked for one
    no-done     streams a finish_reason and usage but ends without `data: [DONE]`
    odd-finish  answers with a non-OpenAI finish_reason ("end_turn")
    tools       answers with a tool call; streamed as tool_call argument deltas
    not-json    HTTP 200 whose body is not JSON
    garbage     HTTP 200 JSON whose choices are not objects
    bad-usage   an `ok` answer whose usage is a string, not an object
    cached      an `ok` answer that read CACHED_TOKENS of its prompt from the provider's cache
    reasoning   an `ok` answer after REASONING as `reasoning_content` (streamed as its own deltas first), with
                its tokens in `completion_tokens_details.reasoning_tokens`
    gated       an `ok` answer once the upstream's `gate` is open (it is, until a test clears it; at most
                GATE_LIMIT seconds): a test counts the requests waiting at the gate, so what is in flight at
                once is exact rather than a matter of timing

Every request is recorded (path, headers, raw and parsed body) together with how it ended:
`done` (answered in full), `disconnected` (the caller closed the connection first), `cut`
(we dropped it on purpose) or `open` (still running).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support.servers import LoopbackApp

SLOW_SECONDS = 0.3
CHUNK_GAP = 0.01
DRIP_GAP = 0.1
LONG_CHUNKS = 400  # at CHUNK_GAP apart: several seconds, far longer than any test waits
HANG_LIMIT = 60.0  # even a hung request gives up eventually, so the server can always stop
GATE_LIMIT = 20.0  # seconds a `gated` request may wait at a closed gate
CACHED_TOKENS = 8  # of PROMPT_TOKENS, for `cached`
PROMPT_TOKENS = 11  # what the fake reports as prompt usage, so tests can tell it from estimates
TOOL_ARGUMENTS = ('{"city"', ': "Pa', 'ris"}')
REASONING = ("The user", " wants", " an echo.")  # what `reasoning` thinks, piece by piece
# What `error-leak` quotes in its error message: none of it may reach a client.
LEAKED_SECRETS = ("sk-live-1234567890abcdefghij", "tok_abcdefghijklmnopqrstuvwxyz012345", "AKIAABCDEFGHIJKLMNOP")
PREFIXES = ("/v1", "/second/v1")  # two "providers" on one server
UPSTREAM_TIMEOUT = 1.0  # the gateway's UPSTREAM_TIMEOUT_SECONDS in the tests (conftest sets it): 504s are quick


class CutConnection(Exception):
    """Raised inside a streaming body: uvicorn then drops the connection mid-response."""


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    raw: str
    body: Any
    state: str = "open"  # open | done | disconnected | cut
    received_at: float = field(default_factory=time.monotonic)
    ended: threading.Event = field(default_factory=threading.Event)

    @property
    def model(self) -> str | None:
        return self.body.get("model") if isinstance(self.body, dict) else None

    @property
    def prefix(self) -> str:
        return self.path.rsplit("/chat/completions", 1)[0]

    def end(self, state: str) -> None:
        if self.state == "open":
            self.state = state
        self.ended.set()

    def wait_ended(self, timeout: float) -> str:
        """The final state, waiting at most `timeout` seconds; `open` if it is still running."""
        self.ended.wait(timeout)
        return self.state


def _last_user_text(messages: Any) -> str:
    for message in reversed(messages if isinstance(messages, list) else []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                texts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
                images = sum(1 for p in content if isinstance(p, dict) and p.get("type") == "image_url")
                return " ".join(texts) + (f" (+{images} image)" if images else "")
    return ""


def answer_text(body: dict[str, Any]) -> str:
    """What `ok` says to a request."""
    return f"Echo: {_last_user_text(body.get('messages'))}"


def answer_pieces(body: dict[str, Any]) -> list[str]:
    words = answer_text(body).split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


def _usage(completion_tokens: int, behaviour: str = "ok") -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": completion_tokens,
        "total_tokens": PROMPT_TOKENS + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": CACHED_TOKENS if behaviour == "cached" else 0},
    }
    if behaviour == "reasoning":  # of the completion tokens
        usage["completion_tokens_details"] = {"reasoning_tokens": len(REASONING)}
    return usage


def _tool_name(body: dict[str, Any]) -> str:
    for tool in body.get("tools") or ():
        if isinstance(tool, dict) and isinstance(tool.get("function"), dict):
            return str(tool["function"].get("name", "get_weather"))
    return "get_weather"


def _error(status: int, message: str, type_: str, **extra: Any) -> JSONResponse:
    headers = extra.pop("headers", None)
    body = {"error": {"message": message, "type": type_, "param": None, "code": None, **extra}}
    return JSONResponse(body, status_code=status, headers=headers)


class FakeUpstream(LoopbackApp):
    """The fake provider's app and its record of requests; `start()` serves it on a free port."""

    def __init__(self) -> None:
        self.records: list[Recorded] = []
        self._lock = threading.Lock()
        self.gate = threading.Event()  # where `gated` requests wait: open until a test clears it
        self.gate.set()
        routes = [Route(f"{p}/chat/completions", self._chat, methods=["POST"]) for p in PREFIXES]
        routes += [Route(f"{p}/models", self._models, methods=["GET"]) for p in PREFIXES]
        self.app = Starlette(routes=routes)
        self.name = "fake-upstream"

    def stop(self) -> None:
        self.gate.set()  # nothing waits at the gate for the server to stop
        super().stop()

    # --- what the tests read -------------------------------------------------------------------

    def find(self, marker: str) -> list[Recorded]:
        """Every request whose body contains `marker` (tests put a unique marker in their prompt)."""
        with self._lock:
            return [r for r in self.records if marker in r.raw]

    def count(self, marker: str) -> int:
        """How many requests have arrived with `marker`, answered or not (`gated` ones wait at the gate)."""
        return len(self.find(marker))

    def wait_for(self, marker: str, count: int = 1, timeout: float = 5.0) -> list[Recorded]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.find(marker)
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.01)

    def one(self, marker: str) -> Recorded:
        found = self.wait_for(marker)
        assert len(found) == 1, f"expected one upstream request with {marker!r}, got {len(found)}"
        return found[0]

    # --- the app -------------------------------------------------------------------------------

    async def _models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": []})

    async def _chat(self, request: Request) -> Response:
        raw = (await request.body()).decode()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        record = Recorded(path=request.url.path, headers=dict(request.headers), raw=raw, body=body)
        with self._lock:
            self.records.append(record)
        if not isinstance(body, dict):
            record.end("done")
            return _error(400, "fake upstream: the body is not a JSON object", "invalid_request_error")
        behaviour = str(body.get("model"))
        stream = body.get("stream") is True
        try:
            response = await self._respond(request, record, behaviour, body, stream)
        except BaseException:
            record.end("disconnected")
            raise
        if not isinstance(response, StreamingResponse):
            record.end("done")
        return response

    async def _respond(
        self, request: Request, record: Recorded, behaviour: str, body: dict[str, Any], stream: bool
    ) -> Response:
        if behaviour == "error-500":
            return _error(500, "fake upstream exploded", "server_error")
        if behaviour == "error-429":
            return _error(
                429,
                "fake upstream: rate limit reached",
                "rate_limit_error",
                headers={"Retry-After": "7"},
            )
        if behaviour == "error-400":
            return _error(
                400,
                "fake upstream says: 'tools[0].function.name' is invalid",
                "invalid_request_error",
            )
        if behaviour == "error-leak":
            secret, token, aws = LEAKED_SECRETS
            return _error(
                400,
                f"Incorrect API key provided: {secret}. We also got 'Authorization: Bearer {token}' and "
                f"aws_access_key_id {aws}; 'messages[0].content' is invalid",
                "invalid_request_error",
            )
        if behaviour == "hang":
            deadline = time.monotonic() + HANG_LIMIT
            # Polled: Starlette has no event for a caller that hangs up before the response starts.
            while not await request.is_disconnected() and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            record.end("disconnected")
            return Response(status_code=499)
        if behaviour == "slow":
            await asyncio.sleep(SLOW_SECONDS)
        if behaviour == "gated":
            deadline = time.monotonic() + GATE_LIMIT
            while not self.gate.is_set() and time.monotonic() < deadline:  # noqa: ASYNC110 - a thread's Event
                await asyncio.sleep(0.01)
        if behaviour == "not-json":
            return Response("<html>502 Bad Gateway</html>", media_type="text/html")
        if behaviour == "garbage":
            return JSONResponse({"id": "x", "object": "chat.completion", "choices": ["not an object"]})
        if behaviour == "bad-usage" and not stream:
            return JSONResponse({**self._whole("ok", body), "usage": "lots of tokens"})
        if stream:
            return StreamingResponse(
                self._sse(record, behaviour, body),
                media_type="text/event-stream",
                headers={"cache-control": "no-cache"},
            )
        return JSONResponse(self._whole(behaviour, body))

    def _whole(self, behaviour: str, body: dict[str, Any]) -> dict[str, Any]:
        finish = "end_turn" if behaviour == "odd-finish" else "stop"
        message: dict[str, Any] = {"role": "assistant", "content": answer_text(body), "refusal": None}
        if behaviour == "reasoning":
            message["reasoning_content"] = "".join(REASONING)
        completion = len(answer_pieces(body)) + (len(REASONING) if behaviour == "reasoning" else 0)
        if behaviour == "tools":
            finish = "tool_calls"
            message = {
                "role": "assistant",
                "content": None,
                "refusal": None,
                "tool_calls": [
                    {
                        "id": "call_fake_1",
                        "type": "function",
                        "function": {"name": _tool_name(body), "arguments": "".join(TOOL_ARGUMENTS)},
                    }
                ],
            }
            completion = len(TOOL_ARGUMENTS)
        return {
            "id": f"fake-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": behaviour,
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
            "usage": _usage(completion, behaviour),
        }

    async def _sse(self, record: Recorded, behaviour: str, body: dict[str, Any]) -> AsyncIterator[bytes]:
        head = {
            "id": f"fake-{uuid.uuid4().hex}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": behaviour,
            "system_fingerprint": "fp_fake",
        }

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            payload = {**head, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
            return b"data: " + json.dumps(payload).encode() + b"\n\n"

        gap = DRIP_GAP if behaviour == "drip" else CHUNK_GAP
        try:
            if behaviour == "tools":
                first_call = {"index": 0, "id": "call_fake_1", "type": "function"}
                first_call["function"] = {"name": _tool_name(body), "arguments": ""}
                deltas: list[dict[str, Any]] = [{"role": "assistant", "content": None, "tool_calls": [first_call]}]
                deltas += [{"tool_calls": [{"index": 0, "function": {"arguments": a}}]} for a in TOOL_ARGUMENTS]
                finish = "tool_calls"
            else:
                pieces = answer_pieces(body)
                if behaviour == "long":
                    pieces = [f" w{i}" for i in range(LONG_CHUNKS)]
                deltas = [{"role": "assistant", "content": ""}] + [{"content": p} for p in pieces]
                if behaviour == "reasoning":
                    deltas[1:1] = [{"reasoning_content": r} for r in REASONING]
                finish = "end_turn" if behaviour == "odd-finish" else "stop"
            completion = len(deltas) - 1
            for i, delta in enumerate(deltas):
                if i:
                    await asyncio.sleep(gap)
                yield chunk(delta)
                if i == 2 and behaviour in ("cut", "stall", "error-mid"):
                    await asyncio.sleep(gap)
                    if behaviour == "cut":
                        record.end("cut")
                        raise CutConnection("the fake upstream drops the connection mid-stream")
                    if behaviour == "stall":
                        await asyncio.sleep(HANG_LIMIT)
                        return
                    error = {"message": "fake upstream: overloaded mid-stream", "type": "server_error"}
                    yield b"data: " + json.dumps({"error": error}).encode() + b"\n\n"
                    record.end("done")
                    return
            await asyncio.sleep(gap)
            yield chunk({}, finish)
            options = body.get("stream_options") or {}
            if options.get("include_usage") and behaviour != "no-usage":
                await asyncio.sleep(gap)
                usage = {**head, "choices": [], "usage": _usage(completion, behaviour)}
                yield b"data: " + json.dumps(usage).encode() + b"\n\n"
            if behaviour != "no-done":
                yield b"data: [DONE]\n\n"
            record.end("done")
        except CutConnection:
            raise
        except BaseException:  # cancelled or closed: the caller hung up
            record.end("disconnected")
            raise
