"""What each function runs through itself during the init SnapStart snapshots (api/snapstart.py).

One function per Lambda, named only by that Lambda's entry point, so each primes (and, as
tests/support/aws_calls.py reads the code, can reach) only what it serves. Nothing here needs a
network: public routes whole, keyed routes without a key, and the chat paths on the built-in model.
A failure is logged and never raised: an unprimed function is only slower.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from gateway.api import snapstart
from gateway.telemetry import logger as log

if TYPE_CHECKING:
    from gateway.wire.stream import Item


def _guarded(function: str, app: FastAPI, requests: list[snapstart.Request], paths: Callable[[], None]) -> None:
    try:
        snapstart.prime(app, requests)
        paths()
    except Exception:
        log.exception("priming failed", extra={"function": function})


def models(app: FastAPI) -> None:
    _guarded("models", app, MODELS, lambda: None)


def stats(app: FastAPI) -> None:
    _guarded("stats", app, KEYLESS["stats"], stats_paths)


def chat(app: FastAPI) -> None:
    _guarded("chat", app, KEYLESS["chat"], chat_paths)


_CHAT = b'{"model":"gateway-echo","messages":[{"role":"user","content":"hi"}]}'
KEYLESS = {  # keyed routes asked without a key: a 401 that runs everything in front of the handler
    "chat": [
        ("POST", "/v1/chat/completions", _CHAT),
        ("POST", "/v1/messages", _CHAT),
        ("POST", "/v1/responses", _CHAT),
    ],
    "stats": [("GET", "/v1/stats", None), ("GET", "/v1/key", None), ("GET", "/v1/generations", None)],
}
MODELS = [  # public and database-free: the whole route runs
    ("GET", "/v1/models", None),
    ("GET", "/v1/models/gateway-echo", None),
    ("GET", "/v1/models/no-such-model", None),
    ("GET", "/models", None),
    ("GET", "/playground", None),
    ("GET", "/openapi.json", None),
]


def chat_paths() -> None:
    """A request of each protocol through translation, validation, routing, the bound and rendering.

    The built-in model answers without a network; admission and settlement (DynamoDB) are left to
    the first real request, whose lean client's paths (the codec, signing) are run here once.
    """
    from gateway.chat import egress
    from gateway.routing.resolve import resolve
    from gateway.storage import client, codec, signing
    from gateway.wire.anthropic import answer as anthropic_answer
    from gateway.wire.anthropic import request_in
    from gateway.wire.anthropic import stream as anthropic_stream
    from gateway.wire.chat import shape
    from gateway.wire.chat import stream as chat_stream
    from gateway.wire.chat.request import validate
    from gateway.wire.responses import answer as responses_answer
    from gateway.wire.responses import stream as responses_stream
    from gateway.wire.responses.request import translate
    from gateway.wire.stream import render

    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]
    chat_body = {"model": "gateway-echo", "messages": [{"role": "user", "content": "hi"}], "tools": tools}
    anthropic = {
        "model": "gateway-echo",
        "max_tokens": 16,
        "system": "s",
        "messages": [{"role": "user", "content": "hi"}],
    }
    translation = translate({"model": "gateway-echo", "input": "hi", "instructions": "s"})
    canonical = request_in.to_canonical(anthropic)

    async def run() -> None:
        for body in (chat_body, canonical, translation.body):
            for stream in (False, True):
                chat = validate({**body, "stream": stream})
                offer = egress.offers(chat.body, resolve(chat.body), chat.max_tokens, stream)[0]
                adapter = offer.candidate.adapter
                if not stream:
                    whole = shape.whole(
                        await adapter.complete(offer.body), id="chatcmpl-0", model="m", provider="p", prompt_estimate=1
                    )
                    anthropic_answer.message(whole, [])
                    responses_answer.whole(whole, translation)
                    continue
                chunks = [chunk async for chunk in adapter.stream(offer.body)]
                for renderer in (
                    chat_stream.Renderer(True),
                    anthropic_stream.Renderer(canonical),
                    responses_stream.Renderer(translation),
                ):
                    [event async for event in render(_canonical(chunks), renderer)]

    asyncio.run(run())
    # The request path's DynamoDB client: its codec and a signature (no credentials, clients or sockets kept).
    payload = codec.to_item({"pk": "KEY#prime", "n": 1, "m": {"a": [True, None]}})
    headers = {"content-type": client.CONTENT_TYPE, "x-amz-target": client.TARGET + "GetItem"}
    signing.sign(
        signing.Credentials("prime", "prime", "prime"), "us-east-1", "dynamodb", headers, repr(payload).encode()
    )
    log.debug("primed", extra={"dynamodb": client.endpoint()})


async def _canonical(chunks: list[dict[str, Any]]) -> AsyncGenerator[Item]:
    """The chat service's canonical stream of these upstream chunks (chat/service.py `_items`), unbilled."""
    from gateway.wire.stream import Delta, Finish

    head = {"id": "chatcmpl-0", "object": "chat.completion.chunk", "created": 0, "model": "m"}
    for chunk in chunks:
        if chunk.get("choices"):
            yield Delta({**head, "choices": chunk["choices"]})
    yield Finish({**head, "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})


def stats_paths() -> None:
    """The presenters on empty figures, and botocore's DynamoDB models parsed."""
    from gateway.stats import present, queries
    from gateway.storage import dynamo

    present.present(queries.empty())
    present.unified_fields(queries.empty(), 0)
    present.generation_view({"id": "chatcmpl-0", "created": 0, "cost": "0"})
    log.debug("primed", extra={"dynamodb_region": dynamo.client().meta.region_name})
