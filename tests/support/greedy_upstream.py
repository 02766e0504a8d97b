"""A greedy upstream: it bills the gateway as much as a real provider legitimately could.

It serves OpenAI's POST .../chat/completions and Anthropic's POST .../messages, whole and
streamed, on one real uvicorn server on 127.0.0.1, and counts what it serves the way a hostile
(but honest) provider would:

- prompt: the UTF-8 byte count of the whole request body it received (a real tokenizer never
  makes more tokens of a text than it has bytes, and it tokenizes everything sent: messages,
  tools, schemas, field names), except that each image, file or audio content part counts as
  its model's per-part figure (the catalog's `part_tokens`) instead of its bytes. It never
  counts beyond the model's context length, as no provider bills more than its window;
- output: it obeys `max_tokens` over `max_completion_tokens` when both are present (as some
  upstreams do), generates exactly that many tokens ("w", one word a token) for each of the `n`
  choices, and when it was sent no limit at all it generates UNLIMITED_TOKENS, so a gateway
  that forgets to send one is caught;
- usage is reported honestly: in the whole answer, and in a final chunk of a stream when
  `stream_options.include_usage` is set.

Anthropic's side (`/messages`) bills the same way: the prompt is every byte received, each
`image` or `document` block (whatever its source: base64, url, file) at its model's per-part
figure (image, file), capped at the context length; the output is exactly `max_tokens` (which
it requires, as Anthropic does). Streams send Anthropic's events: message_start (its usage
holds the input counts), content_block_start, content_block_delta..., content_block_stop,
message_delta (cumulative output_tokens), message_stop. Two things only it bills:

- cache writes: when any `cache_control` in the request has `"ttl": "1h"`, the whole prompt is
  billed as one-hour cache writes at the catalog's `pricing.cache_write_1h` (CACHE_1H times the
  input price when unset); any other `cache_control` bills it as five-minute writes at
  `pricing.cache_write` (CACHE_5M times input). Usage reports them as Anthropic does:
  `cache_creation_input_tokens` with the `cache_creation` split (ephemeral_5m / ephemeral_1h);
- server tools: each tool whose `type` is neither absent nor "custom" (web_search_20250305, ...)
  is used `max_uses` times (SERVER_TOOL_USES when unset) at SERVER_TOOL_FEE USD a use. The
  OpenAI side bills a tool whose type is not "function" or "custom" the same way, so a gateway
  that forwards one anywhere is caught.

What it does is chosen by the upstream model name (the catalog maps gateway models onto them):
a name containing `2x` reports (and bills) twice the prompt it counted, a provider that counts
differently from the gateway's bound; a name containing `eos` stops after EOS_TOKENS tokens
(an honest short answer, whatever the limit); a name containing `dense` writes CJK Extension B
characters (U+20000...), each 4 UTF-8 bytes and billed as DENSE_TOKENS tokens, so its limit in
tokens is a quarter as many characters; a name containing `slow` waits `slow_seconds`
(SLOW_SECONDS unless set) before answering a whole request, which it bills in full however long
the caller waited: a real provider bills what it finished after its caller timed out.
A request with `service_tier: "priority"` is billed at the model's `pricing.tiers.priority`
price, or at PRIORITY_MULTIPLIER times the base price when the catalog states none (what a
provider charges whether or not the gateway knows).

Streams send the first SINGLE_CHUNKS tokens one to a chunk (a character to a chunk when dense;
the first few FIRST_GAP apart, so a client can hang up mid-stream), then BATCH tokens to a
chunk, and wait TAIL_DELAY before the finish and usage chunks (Anthropic: content_block_stop
and message_delta), so a client that hangs up after the first token, or after the whole text,
cuts the stream before the usage arrives.

Every request is recorded (`Served`): its body, the prompt and completion tokens it was billed
(completion tokens as generated, so a stream cut short records what was generated before the
cut), the price it was billed at, and how it ended. `served_cost(records)` is the exact Decimal
cost of all of it at catalog prices, cache-write premiums and server-tool fees included.
`on_request`, when set, is called with each record as it is made (before the answer).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support.servers import LoopbackApp

MILLION = Decimal(1_000_000)
UNLIMITED_TOKENS = 50_000  # what a model "generates" when the gateway sent it no output limit
UNLIMITED_CHUNK = 1_000  # tokens a chunk when streaming an unlimited answer: few chunks, fast
EOS_TOKENS = 5  # what an `eos` model answers, whatever the limit
SINGLE_CHUNKS = 64  # tokens streamed one to a chunk before batching
BATCH = 500  # tokens a chunk after that
FIRST_GAP = 0.002  # seconds between the first few chunks of a stream
SLOW_CHUNKS = 8
TAIL_DELAY = 0.3  # seconds before the finish and usage chunks of a stream
PRIORITY_MULTIPLIER = Decimal(2)  # a priority tier's price when the catalog states none
DEFAULT_PART_TOKENS = {"image": 1000, "file": 3000, "audio": 2000}
MEDIA = {"image_url": "image", "input_image": "image", "input_audio": "audio", "file": "file"}
ANTHROPIC_MEDIA = {"image": "image", "document": "file"}  # block type -> per-part kind
PREFIXES = ("/v1", "/tiered/v1")
CACHE_5M = Decimal("1.25")  # a five-minute cache write's price over the input price, when the catalog states none
CACHE_1H = Decimal(2)  # a one-hour cache write's
SERVER_TOOL_FEE = Decimal(10)  # USD a use of a server tool
SERVER_TOOL_USES = 10  # uses of a server tool sent without max_uses
DENSE_TOKENS = 4  # tokens (and UTF-8 bytes) of each character a `dense` model writes
DENSE_FIRST = 0x20000  # CJK Unified Ideographs Extension B
SLOW_SECONDS = 3.0  # how long a `slow` model takes over a whole answer


@dataclass(frozen=True)
class Billing:
    """How the upstream bills one of its models (USD per million tokens)."""

    input: Decimal
    output: Decimal
    priority_input: Decimal
    priority_output: Decimal
    part_tokens: Mapping[str, int]
    context_length: int
    cache_write: Decimal  # a five-minute cache write (Anthropic's side)
    cache_write_1h: Decimal  # a one-hour one


def _price(raw: Mapping[str, Any]) -> tuple[Decimal, Decimal]:
    return Decimal(str(raw["input"])), Decimal(str(raw["output"]))


def billing_from_catalog(
    catalog: Mapping[str, Any], part_tokens: Mapping[str, Mapping[str, int]] | None = None
) -> dict[str, Billing]:
    """Billing by upstream model name, from a gateway catalog document (its offerings' `model` names).

    `part_tokens` overrides, by upstream model name, what one media part counts; by default the
    catalog model's `part_tokens`, and DEFAULT_PART_TOKENS for a kind it does not state.
    """
    billing: dict[str, Billing] = {}
    for model in catalog.get("models", ()):
        for offering in model.get("offerings", ()):
            name = offering.get("model", model["id"])
            pricing = offering.get("pricing") or model.get("pricing") or {"input": "0", "output": "0"}
            base_in, base_out = _price(pricing)
            priority = (pricing.get("tiers") or {}).get("priority")
            pri_in, pri_out = (
                _price(priority) if priority else (base_in * PRIORITY_MULTIPLIER, base_out * PRIORITY_MULTIPLIER)
            )
            parts = {**DEFAULT_PART_TOKENS, **(model.get("part_tokens") or {})}
            if part_tokens and name in part_tokens:
                parts.update(part_tokens[name])
            write_5m, write_1h = (
                Decimal(str(pricing[key])) if pricing.get(key) is not None else base_in * factor
                for key, factor in (("cache_write", CACHE_5M), ("cache_write_1h", CACHE_1H))
            )
            billing[name] = Billing(
                input=base_in,
                output=base_out,
                priority_input=pri_in,
                priority_output=pri_out,
                part_tokens=parts,
                context_length=int(model.get("context_length", 8192)),
                cache_write=write_5m,
                cache_write_1h=write_1h,
            )
    return billing


@dataclass
class Served:
    """One request the upstream received, and what it bills for it."""

    path: str
    upstream_model: str
    raw: str
    body: dict[str, Any]
    prompt_tokens: int  # billed (and reported)
    limit: int | None  # the output limit it obeyed: max_tokens over max_completion_tokens; None if none
    choices: int
    tier: str | None  # "priority" when it billed the priority price
    input_price: Decimal  # USD per million tokens
    output_price: Decimal
    completion_tokens: int = 0  # generated so far, all choices together
    stream: bool = False
    state: str = "open"  # open | done | disconnected
    protocol: str = "openai"  # or "anthropic" (POST .../messages)
    cache_ttl: str | None = None  # "5m" or "1h": the whole prompt was billed as cache writes of that lifetime
    cache_price: Decimal = Decimal(0)  # USD per million tokens of those writes
    server_tool_uses: int = 0  # billed SERVER_TOOL_FEE each
    received_at: float = field(default_factory=time.monotonic)
    ended: threading.Event = field(default_factory=threading.Event)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def cache_write_tokens(self) -> int:
        return self.prompt_tokens if self.cache_ttl else 0

    @property
    def prompt_cost(self) -> Decimal:
        """The prompt as billed: at the cache-write price when it was written to the cache."""
        price = self.cache_price if self.cache_ttl else self.input_price
        return price * self.prompt_tokens / MILLION

    @property
    def output_cost(self) -> Decimal:
        return self.output_price * self.completion_tokens / MILLION

    @property
    def fees(self) -> Decimal:
        return SERVER_TOOL_FEE * self.server_tool_uses

    @property
    def cost(self) -> Decimal:
        return self.prompt_cost + self.output_cost + self.fees

    def end(self, state: str) -> None:
        if self.state == "open":
            self.state = state
        self.ended.set()


def served_cost(records: Iterable[Served]) -> Decimal:
    """The exact cost, at catalog prices, of everything these requests were served."""
    return sum((r.cost for r in records), Decimal(0))


def served_tokens(records: Iterable[Served]) -> int:
    return sum(r.tokens for r in records)


def output_limit(body: Mapping[str, Any]) -> int | None:
    """The limit this upstream obeys: `max_tokens` when present, else `max_completion_tokens`."""
    for name in ("max_tokens", "max_completion_tokens"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


def media_parts(body: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(kind, part) for every image, file and audio content part of the messages."""
    found = []
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        for part in content if isinstance(content, list) else ():
            if isinstance(part, dict) and part.get("type") in MEDIA:
                found.append((MEDIA[part["type"]], part))
    return found


def _compact(value: Any) -> bytes:
    """JSON as the gateway sends it (orjson: no spaces, UTF-8 as is)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def anthropic_media(body: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(kind, block) for every image and document block of an Anthropic request, tool results' included."""
    found: list[tuple[str, dict[str, Any]]] = []

    def walk(blocks: Any) -> None:
        for block in blocks if isinstance(blocks, list) else ():
            if not isinstance(block, dict):
                continue
            kind = ANTHROPIC_MEDIA.get(block.get("type"))  # type: ignore[arg-type]
            if kind:
                found.append((kind, block))
            elif block.get("type") == "tool_result":
                walk(block.get("content"))

    for message in body.get("messages") or ():
        if isinstance(message, dict):
            walk(message.get("content"))
    return found


def prompt_tokens(
    raw: bytes, body: Mapping[str, Any], billing: Billing, parts: list[tuple[str, dict[str, Any]]] | None = None
) -> int:
    """Every byte received is a token, except that a media part counts as its model's per-part figure."""
    total = len(raw)
    for kind, part in media_parts(body) if parts is None else parts:
        total += billing.part_tokens[kind] - len(_compact(part))
    return max(min(total, billing.context_length), 0)


def cache_lifetime(value: Any) -> str | None:
    """ "1h" if any cache_control in the request asks for an hour, "5m" if any other is there, else None."""
    found, stack = None, [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            control = item.get("cache_control")
            if isinstance(control, dict):
                if control.get("ttl") == "1h":
                    return "1h"
                found = "5m"
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def server_tool_uses(body: Mapping[str, Any], custom: tuple[str | None, ...]) -> int:
    """Uses billed for the tools whose type is not one of `custom` (the caller's own functions)."""
    uses = 0
    for tool in body.get("tools") or ():
        if isinstance(tool, dict) and tool.get("type") not in custom:
            most = tool.get("max_uses")
            uses += most if isinstance(most, int) and not isinstance(most, bool) and most > 0 else SERVER_TOOL_USES
    return uses


def words(count: int, first: bool) -> str:
    """`count` tokens of text, one word a token: "w w w" (" w w" when it continues a stream)."""
    if count <= 0:
        return ""
    return ("w" if first else " w") + " w" * (count - 1)


def dense(count: int) -> str:
    """`count` tokens of CJK Extension B: one 4-byte character for every DENSE_TOKENS tokens (rounded up)."""
    return "".join(chr(DENSE_FIRST + i % 0xA000) for i in range(-(-max(count, 0) // DENSE_TOKENS)))


def _error(status: int, message: str) -> JSONResponse:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}
    return JSONResponse(body, status_code=status)


def _anthropic_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"type": "error", "error": {"type": "invalid_request_error", "message": message}}, status)


def _sse_event(kind: str, payload: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: ".encode() + json.dumps({"type": kind, **payload}).encode() + b"\n\n"


class GreedyUpstream(LoopbackApp):
    """The app, its record of what it served, and the server (`start()` serves it on a free port)."""

    def __init__(self, catalog: Mapping[str, Any], part_tokens: Mapping[str, Mapping[str, int]] | None = None) -> None:
        self.billing = billing_from_catalog(catalog, part_tokens)
        self.records: list[Served] = []
        self.slow_seconds = SLOW_SECONDS
        self.on_request: Callable[[Served], None] | None = None
        self._lock = threading.Lock()
        routes = [Route(f"{p}/chat/completions", self._chat, methods=["POST"]) for p in PREFIXES]
        routes += [Route(f"{p}/messages", self._messages, methods=["POST"]) for p in PREFIXES]
        self.app = Starlette(routes=routes)
        self.name = "greedy-upstream"

    # --- what the tests read -------------------------------------------------------------------

    def find(self, marker: str) -> list[Served]:
        """Every request whose body contains `marker` (bodies it could not parse included)."""
        with self._lock:
            records = list(self.records)
        return [r for r in records if marker in r.raw]

    def wait_ended(self, records: Iterable[Served], timeout: float = 10.0) -> list[Served]:
        """Wait until every record has ended (answered, or abandoned by the gateway); those still open."""
        deadline = time.monotonic() + timeout
        records = list(records)
        for record in records:
            record.ended.wait(max(deadline - time.monotonic(), 0))
        return [r for r in records if r.state == "open"]

    # --- the app -------------------------------------------------------------------------------

    async def _read(self, request: Request) -> tuple[bytes, Any]:
        """The raw body and its JSON (None if it is not a JSON object); every body is recorded."""
        raw = await request.body()
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            body = None
        if not isinstance(body, dict):
            path, text = request.url.path, raw.decode(errors="replace")
            record = Served(path, "", text, {}, 0, None, 1, None, Decimal(0), Decimal(0), state="done")
            record.ended.set()
            self._add(record)
            return raw, None
        return raw, body

    def _add(self, record: Served) -> None:
        with self._lock:
            self.records.append(record)
        if self.on_request is not None:
            self.on_request(record)

    def _record(self, request: Request, raw: bytes, body: dict[str, Any], billing: Billing, **fields: Any) -> Served:
        name = str(body.get("model"))
        priority = body.get("service_tier") == "priority"
        record = Served(
            path=request.url.path,
            upstream_model=name,
            raw=raw.decode(errors="replace"),
            body=body,
            tier="priority" if priority else None,
            input_price=billing.priority_input if priority else billing.input,
            output_price=billing.priority_output if priority else billing.output,
            stream=body.get("stream") is True,
            **fields,
        )
        if "2x" in name:
            record.prompt_tokens *= 2
        return record

    async def _finish_slowly(self, record: Served, generated: int) -> None:
        """A `slow` model's whole answer: billed in full at once, sent after slow_seconds, caller or not."""
        record.completion_tokens = generated
        try:
            await asyncio.sleep(self.slow_seconds)
        finally:
            record.end("done")  # finished and billed, whether or not anyone still waits for it

    async def _chat(self, request: Request) -> Response:
        raw, body = await self._read(request)
        if body is None:
            return _error(400, "greedy upstream: the body is not a JSON object")
        name = str(body.get("model"))
        billing = self.billing.get(name)
        if billing is None:
            return _error(404, f"greedy upstream: no model {name!r}")
        limit = output_limit(body)
        n = body.get("n")
        record = self._record(
            request,
            raw,
            body,
            billing,
            prompt_tokens=prompt_tokens(raw, body, billing),
            limit=limit,
            choices=n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1,
            server_tool_uses=server_tool_uses(body, ("function", "custom")),
        )
        self._add(record)
        per_choice = UNLIMITED_TOKENS if limit is None else limit
        if "eos" in name:
            per_choice = min(per_choice, EOS_TOKENS)
        finish = "length" if limit is None or per_choice == limit else "stop"
        if record.stream:
            return StreamingResponse(
                self._sse(record, per_choice, finish),
                media_type="text/event-stream",
                headers={"cache-control": "no-cache"},
            )
        if "slow" in name:
            await self._finish_slowly(record, per_choice * record.choices)
        else:
            record.completion_tokens = per_choice * record.choices
            record.end("done")
        return JSONResponse(self._whole(record, per_choice, finish))

    @staticmethod
    def _usage(record: Served) -> dict[str, Any]:
        return {
            "prompt_tokens": record.prompt_tokens,
            "completion_tokens": record.completion_tokens,
            "total_tokens": record.prompt_tokens + record.completion_tokens,
        }

    def _head(self, record: Served, kind: str) -> dict[str, Any]:
        head: dict[str, Any] = {
            "id": f"greedy-{uuid.uuid4().hex}",
            "object": kind,
            "created": int(time.time()),
            "model": record.upstream_model,
        }
        if record.tier:
            head["service_tier"] = record.tier
        return head

    @staticmethod
    def _text(record: Served, count: int, first: bool) -> str:
        return dense(count) if "dense" in record.upstream_model else words(count, first)

    @staticmethod
    def _steps(record: Served, total: int) -> Iterable[int]:
        """Token counts of a stream's pieces: one token (a character when dense) at a time, then batches."""
        single = DENSE_TOKENS if "dense" in record.upstream_model else 1
        sent = 0
        while sent < total:
            if record.limit is None:
                size = UNLIMITED_CHUNK
            elif sent < SINGLE_CHUNKS:
                size = single
            else:
                size = BATCH
            size = min(size, total - sent)
            yield size
            sent += size

    def _whole(self, record: Served, per_choice: int, finish: str) -> dict[str, Any]:
        text = self._text(record, per_choice, first=True)
        choices = [
            {
                "index": i,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish,
            }
            for i in range(record.choices)
        ]
        return {**self._head(record, "chat.completion"), "choices": choices, "usage": self._usage(record)}

    async def _sse(self, record: Served, per_choice: int, finish: str) -> AsyncIterator[bytes]:
        head = self._head(record, "chat.completion.chunk")

        def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            return b"data: " + json.dumps({**head, "choices": choices, **extra}).encode() + b"\n\n"

        def deltas(delta: dict[str, Any], reason: str | None = None) -> bytes:
            return event(
                [{"index": i, "delta": delta, "logprobs": None, "finish_reason": reason} for i in range(record.choices)]
            )

        try:
            yield deltas({"role": "assistant", "content": ""})
            sent = 0
            for size in self._steps(record, per_choice):
                record.completion_tokens += size * record.choices  # generated: billed even if never read
                yield deltas({"content": self._text(record, size, first=sent == 0)})
                sent += size
                await asyncio.sleep(FIRST_GAP if sent <= SLOW_CHUNKS else 0)
            await asyncio.sleep(TAIL_DELAY)
            yield deltas({}, finish)
            options = record.body.get("stream_options")
            if isinstance(options, dict) and options.get("include_usage"):
                yield event([], usage=self._usage(record))
            yield b"data: [DONE]\n\n"
            record.end("done")
        except BaseException:  # cancelled or closed: the gateway hung up
            record.end("disconnected")
            raise

    # --- Anthropic's Messages API --------------------------------------------------------------

    async def _messages(self, request: Request) -> Response:
        raw, body = await self._read(request)
        if body is None:
            return _anthropic_error(400, "greedy upstream: the body is not a JSON object")
        name = str(body.get("model"))
        billing = self.billing.get(name)
        if billing is None:
            return _anthropic_error(404, f"greedy upstream: no model {name!r}")
        limit = body.get("max_tokens")
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            return _anthropic_error(400, "max_tokens: Field required")
        ttl = cache_lifetime(body)
        record = self._record(
            request,
            raw,
            body,
            billing,
            prompt_tokens=prompt_tokens(raw, body, billing, anthropic_media(body)),
            limit=limit,
            choices=1,
            protocol="anthropic",
            cache_ttl=ttl,
            cache_price={"1h": billing.cache_write_1h, "5m": billing.cache_write}.get(ttl or "", Decimal(0)),
            server_tool_uses=server_tool_uses(body, (None, "custom")),
        )
        self._add(record)
        count = min(limit, EOS_TOKENS) if "eos" in name else limit
        stop = "max_tokens" if count == limit else "end_turn"
        if record.stream:
            return StreamingResponse(
                self._anthropic_sse(record, count, stop),
                media_type="text/event-stream",
                headers={"cache-control": "no-cache"},
            )
        if "slow" in name:
            await self._finish_slowly(record, count)
        else:
            record.completion_tokens = count
            record.end("done")
        content = [{"type": "text", "text": self._text(record, count, first=True)}]
        message = self._anthropic_message(record, content, stop)
        message["usage"]["output_tokens"] = record.completion_tokens
        return JSONResponse(message)

    @staticmethod
    def _anthropic_usage(record: Served) -> dict[str, Any]:
        """The input side of Anthropic's usage: fresh input, cache writes (with their split) and reads."""
        written = record.cache_write_tokens
        usage: dict[str, Any] = {
            "input_tokens": record.prompt_tokens - written,
            "cache_creation_input_tokens": written,
            "cache_read_input_tokens": 0,
            "cache_creation": {
                "ephemeral_5m_input_tokens": written if record.cache_ttl == "5m" else 0,
                "ephemeral_1h_input_tokens": written if record.cache_ttl == "1h" else 0,
            },
        }
        if record.server_tool_uses:
            usage["server_tool_use"] = {"web_search_requests": record.server_tool_uses}
        return usage

    def _anthropic_message(self, record: Served, content: list[dict[str, Any]], stop: str | None) -> dict[str, Any]:
        return {
            "id": f"msg_greedy{uuid.uuid4().hex[:20]}",
            "type": "message",
            "role": "assistant",
            "model": record.upstream_model,
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {**self._anthropic_usage(record), "output_tokens": 1},
        }

    async def _anthropic_sse(self, record: Served, count: int, stop: str) -> AsyncIterator[bytes]:
        try:
            yield _sse_event("message_start", {"message": self._anthropic_message(record, [], None)})
            yield _sse_event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
            yield _sse_event("ping", {})
            sent = 0
            for size in self._steps(record, count):
                record.completion_tokens += size  # generated: billed even if never read
                text = self._text(record, size, first=sent == 0)
                yield _sse_event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": text}})
                sent += size
                await asyncio.sleep(FIRST_GAP if sent <= SLOW_CHUNKS else 0)
            await asyncio.sleep(TAIL_DELAY)
            yield _sse_event("content_block_stop", {"index": 0})
            usage: dict[str, Any] = {"output_tokens": record.completion_tokens}
            if record.server_tool_uses:
                usage["server_tool_use"] = {"web_search_requests": record.server_tool_uses}
            yield _sse_event("message_delta", {"delta": {"stop_reason": stop, "stop_sequence": None}, "usage": usage})
            yield _sse_event("message_stop", {})
            record.end("done")
        except BaseException:  # cancelled or closed: the gateway hung up
            record.end("disconnected")
            raise
