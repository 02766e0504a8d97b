"""A greedy OpenAI-compatible upstream: it bills the gateway as much as a real provider legitimately could.

It serves POST .../chat/completions, whole and streamed, on a real uvicorn server on 127.0.0.1,
and counts what it serves the way a hostile (but honest) provider would:

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

What it does is chosen by the upstream model name (the catalog maps gateway models onto them):
a name containing `2x` reports (and bills) twice the prompt it counted, a provider that counts
differently from the gateway's bound; a name containing `eos` stops after EOS_TOKENS tokens
(an honest short answer, whatever the limit). A request with `service_tier: "priority"` is
billed at the model's `pricing.tiers.priority` price, or at PRIORITY_MULTIPLIER times the base
price when the catalog states none (what a provider charges whether or not the gateway knows).

Streams send the first SINGLE_CHUNKS tokens one to a chunk (the first few FIRST_GAP apart, so a
client can hang up mid-stream), then BATCH tokens to a chunk, and wait TAIL_DELAY before the
finish and usage chunks, so a client that hangs up after the first token cuts the stream
before the usage arrives.

Every request is recorded (`Served`): its body, the prompt and completion tokens it was billed
(completion tokens as generated, so a stream cut short records what was generated before the
cut), the price it was billed at, and how it ended. `served_cost(records)` is the exact Decimal
cost of all of it at catalog prices.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
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
PREFIXES = ("/v1", "/tiered/v1")


@dataclass(frozen=True)
class Billing:
    """How the upstream bills one of its models (USD per million tokens)."""

    input: Decimal
    output: Decimal
    priority_input: Decimal
    priority_output: Decimal
    part_tokens: Mapping[str, int]
    context_length: int


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
            billing[name] = Billing(
                input=base_in,
                output=base_out,
                priority_input=pri_in,
                priority_output=pri_out,
                part_tokens=parts,
                context_length=int(model.get("context_length", 8192)),
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
    received_at: float = field(default_factory=time.monotonic)
    ended: threading.Event = field(default_factory=threading.Event)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def prompt_cost(self) -> Decimal:
        return self.input_price * self.prompt_tokens / MILLION

    @property
    def cost(self) -> Decimal:
        return (self.input_price * self.prompt_tokens + self.output_price * self.completion_tokens) / MILLION

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


def prompt_tokens(raw: bytes, body: Mapping[str, Any], billing: Billing) -> int:
    """Every byte received is a token, except that a media part counts as its model's per-part figure."""
    total = len(raw)
    for kind, part in media_parts(body):
        total += billing.part_tokens[kind] - len(_compact(part))
    return max(min(total, billing.context_length), 0)


def words(count: int, first: bool) -> str:
    """`count` tokens of text, one word a token: "w w w" (" w w" when it continues a stream)."""
    if count <= 0:
        return ""
    return ("w" if first else " w") + " w" * (count - 1)


def _error(status: int, message: str) -> JSONResponse:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}
    return JSONResponse(body, status_code=status)


class GreedyUpstream(LoopbackApp):
    """The app, its record of what it served, and the server (`start()` serves it on a free port)."""

    def __init__(self, catalog: Mapping[str, Any], part_tokens: Mapping[str, Mapping[str, int]] | None = None) -> None:
        self.billing = billing_from_catalog(catalog, part_tokens)
        self.records: list[Served] = []
        self._lock = threading.Lock()
        self.app = Starlette(routes=[Route(f"{p}/chat/completions", self._chat, methods=["POST"]) for p in PREFIXES])
        self.name = "greedy-upstream"

    # --- what the tests read -------------------------------------------------------------------

    def find(self, marker: str) -> list[Served]:
        """Every request whose body contains `marker`."""
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

    async def _chat(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            return _error(400, "greedy upstream: the body is not JSON")
        if not isinstance(body, dict):
            return _error(400, "greedy upstream: the body is not a JSON object")
        name = str(body.get("model"))
        billing = self.billing.get(name)
        if billing is None:
            return _error(404, f"greedy upstream: no model {name!r}")
        prompt = prompt_tokens(raw, body, billing)
        if "2x" in name:
            prompt *= 2
        limit = output_limit(body)
        n = body.get("n")
        choices = n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1
        priority = body.get("service_tier") == "priority"
        record = Served(
            path=request.url.path,
            upstream_model=name,
            raw=raw.decode(errors="replace"),
            body=body,
            prompt_tokens=prompt,
            limit=limit,
            choices=choices,
            tier="priority" if priority else None,
            input_price=billing.priority_input if priority else billing.input,
            output_price=billing.priority_output if priority else billing.output,
            stream=body.get("stream") is True,
        )
        with self._lock:
            self.records.append(record)
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
        record.completion_tokens = per_choice * choices
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

    def _whole(self, record: Served, per_choice: int, finish: str) -> dict[str, Any]:
        text = words(per_choice, first=True)
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
            while sent < per_choice:
                if record.limit is None:
                    size = UNLIMITED_CHUNK
                elif sent < SINGLE_CHUNKS:
                    size = 1
                else:
                    size = BATCH
                size = min(size, per_choice - sent)
                record.completion_tokens += size * record.choices  # generated: billed even if never read
                yield deltas({"content": words(size, first=sent == 0)})
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
