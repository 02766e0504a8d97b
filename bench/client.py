"""The load generator's client: a minimal keep-alive HTTP/1.1 client on asyncio streams, so that its own
overhead is small and identical on the direct and the gateway path."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from dataclasses import dataclass
from typing import Any

PROMPT = "Say hello to the benchmark, briefly."
MAX_TOKENS = 64
CONTENT = re.compile(rb'"content":"[^"]')
REQUEST_TIMEOUT = 60.0
IDLE_REOPEN = 3.0  # seconds: reconnect rather than reuse a connection the server may be closing


@dataclass(slots=True)
class Result:
    ok: bool
    total: float  # seconds to the whole body (whole) or to `data: [DONE]` (stream)
    first: float  # seconds to the first content chunk (stream); = total for whole answers
    error: str | None = None
    sent: float = 0.0  # perf_counter when the request was written


class Conn:
    """One keep-alive HTTP/1.1 connection: one request at a time, reconnecting when the server closes."""

    def __init__(self, host: str, port: int, prefix: bytes) -> None:
        self.host, self.port, self.prefix = host, port, prefix
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.used = 0.0  # when the last response ended: uvicorn closes connections idle for 5 s

    async def open(self) -> None:
        self.used = time.monotonic()
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(self, payload: bytes, bench_id: str | None) -> Result:
        if self.writer is not None and time.monotonic() - self.used > IDLE_REOPEN:
            self.close()
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        head = self.prefix + b"content-length: %d\r\n" % len(payload)
        if bench_id is not None:
            head += b"x-bench-id: " + bench_id.encode() + b"\r\n"
        reader = self.reader
        t0 = time.perf_counter()
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                self.writer.write(head + b"\r\n" + payload)
                raw = await reader.readuntil(b"\r\n\r\n")
                lines = raw.split(b"\r\n")
                status = int(lines[0].split(b" ", 2)[1])
                length, chunked, close = None, False, False
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"transfer-encoding":
                        chunked = b"chunked" in value.lower()
                    elif name == b"connection":
                        close = value.strip().lower() == b"close"
                if length is not None:
                    body = await reader.readexactly(length)
                    total = time.perf_counter() - t0
                    ok = status == 200 and b'"choices"' in body
                    result = Result(ok, total, total, None if ok else f"HTTP {status}: {body[:300]!r}")
                elif chunked:
                    first = None
                    tail = b""
                    error = None
                    while True:
                        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                        if size == 0:
                            await reader.readuntil(b"\r\n")
                            break
                        data = (await reader.readexactly(size + 2))[:-2]
                        if first is None and CONTENT.search(data):
                            first = time.perf_counter() - t0
                        if b'"error"' in data and error is None:
                            error = data[:300].decode(errors="replace")
                        tail = (tail + data)[-64:]
                    total = time.perf_counter() - t0
                    ok = status == 200 and error is None and first is not None and tail.endswith(b"data: [DONE]\n\n")
                    if not ok and error is None:
                        error = f"HTTP {status}, stream ended with {tail!r}"
                    result = Result(ok, total, first if first is not None else total, error)
                else:
                    body = await reader.read()
                    total = time.perf_counter() - t0
                    result = Result(False, total, total, f"HTTP {status} without a length: {body[:300]!r}")
                    close = True
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError) as exc:
            self.close()
            return Result(False, time.perf_counter() - t0, 0.0, f"{type(exc).__name__}: {exc}", t0)
        result.sent = t0
        self.used = time.monotonic()
        if close:
            self.close()
        return result


def request_prefix(url: str, path: str, key: str | None) -> tuple[str, int, bytes]:
    hostport = url.split("://", 1)[1]
    host, port = hostport.split(":")
    head = f"POST {path} HTTP/1.1\r\nhost: {hostport}\r\ncontent-type: application/json\r\n"
    if key:
        head += f"authorization: Bearer {key}\r\n"
    return host, int(port), head.encode()


@dataclass(frozen=True)
class Body:
    """A request body, plain or carrying a `bench_id` (an unknown field: the gateway passes it through,
    so the fake upstream can tell when it saw each request)."""

    plain: bytes
    before: bytes
    after: bytes

    def tagged(self, bench_id: str) -> bytes:
        return self.before + bench_id.encode() + self.after


PROMPTS = {"short": 0, "90KB": 90 * 1024}  # the system prompt's size in bytes, by the name the report uses
_AGENT_PARAGRAPHS = (
    "You are a coding agent working in the user's repository. Read files before you change them, keep "
    "changes small, and run the tests after each change.\n",
    '## Tool: edit_file\nReplace an exact string in a file. Parameters: {"path": string, "old": string, '
    '"new": string}. The old string must occur exactly once.\n',
    '```python\ndef apply(patch: str, root: Path) -> list[str]:\n    """Apply a unified diff; return the '
    'paths changed."""\n    return [hunk.path for hunk in parse(patch) if hunk.apply(root)]\n```\n',
    "- Never print secrets; quote paths with 'single quotes' and use \t tabs only where the file does.\n",
)


def agent_prompt(size: int) -> str:
    """A coding agent's kind of system prompt (instructions, tool descriptions, code with quotes and
    newlines to escape), `size` bytes of UTF-8: what agents resend on every turn."""
    text, i = [], 0
    total = 0
    while total < size:
        piece = f"[{i}] " + _AGENT_PARAGRAPHS[i % len(_AGENT_PARAGRAPHS)]
        text.append(piece)
        total += len(piece)
        i += 1
    return "".join(text)[:size]


def payload(model: str, stream: bool, system: int = 0) -> Body:
    """The request body: a short user message, after a `system`-byte system prompt when `system` > 0."""
    messages = [{"role": "user", "content": PROMPT}]
    if system:
        messages.insert(0, {"role": "system", "content": agent_prompt(system)})
    body: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": MAX_TOKENS}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}  # what the gateway asks the upstream for anyway
    plain = json.dumps(body, separators=(",", ":")).encode()
    before, after = json.dumps({**body, "bench_id": "@"}, separators=(",", ":")).encode().split(b"@")
    return Body(plain, before, after)


async def drive(conns: list[Conn], n: int, body: Body, tag: str | None) -> list[Result]:
    """Send n requests over the connections, each connection one request at a time."""
    results: list[Result | None] = [None] * n
    counter = iter(range(n))

    async def worker(conn: Conn) -> None:
        for i in counter:
            if tag:
                bench_id = f"{tag}-{i}"
                results[i] = await conn.request(body.tagged(bench_id), bench_id)
            else:
                results[i] = await conn.request(body.plain, None)

    await asyncio.gather(*(worker(c) for c in conns))
    return results  # type: ignore[return-value]
