"""`gateway-admin smoke`: after a deploy, the official SDKs against the endpoint, and a table of what passed.

Each check is what a user's first hour does: list the models, a chat completion whole and streamed,
a Response, an Anthropic Message, and the two errors every client must read (a bad key is a 401,
an unknown model a 404). The built-in model answers by default, so a fresh stack with no provider
keys passes; `--model` tries a real one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Check:
    name: str
    ok: bool
    ms: float
    detail: str


def _timed(name: str, run: Callable[[], str]) -> Check:
    started = time.perf_counter()
    try:
        detail = run()
        ok = True
    except Exception as exc:  # a failed check is a row in the table, whatever failed
        detail, ok = f"{type(exc).__name__}: {exc}"[:160], False
    return Check(name, ok, (time.perf_counter() - started) * 1000, detail)


def _status(expected: int, call: Callable[[], Any]) -> str:
    """The call must fail with `expected` (the SDKs raise APIStatusError with its status)."""
    try:
        call()
    except Exception as exc:
        status = getattr(exc, "status_code", None)
        if status == expected:
            return f"{status}, as it should"
        raise AssertionError(f"expected {expected}, got {status}: {exc}") from None
    raise AssertionError(f"expected {expected}, got a success")


def run(base_url: str, key: str, model: str = "gateway-echo", timeout: float = 60.0) -> list[Check]:
    """Every check against `base_url` (ending in /v1) with `key`."""
    import anthropic
    import openai

    client = openai.OpenAI(base_url=base_url, api_key=key, timeout=timeout, max_retries=0)
    messages = [{"role": "user", "content": "Say hi"}]

    def models() -> str:
        ids = [m.id for m in client.models.list().data]
        assert model in ids, f"{model} is not listed"
        return f"{len(ids)} models"

    def chat() -> str:
        answer = client.chat.completions.create(model=model, messages=messages, max_tokens=32)  # type: ignore[arg-type]
        assert answer.choices[0].message.content, "an empty answer"
        return f"{answer.usage.total_tokens if answer.usage else '?'} tokens"

    def stream() -> str:
        chunks = list(client.chat.completions.create(model=model, messages=messages, max_tokens=32, stream=True))  # type: ignore[arg-type]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text and chunks[-1].usage is not None, "no text, or no usage chunk"
        return f"{len(chunks)} chunks"

    def responses() -> str:
        response = client.responses.create(model=model, input="Say hi", max_output_tokens=32)
        assert response.output_text, "no output text"
        return response.status or ""

    def messages_api() -> str:
        claude = anthropic.Anthropic(base_url=base_url.removesuffix("/v1"), api_key=key, timeout=timeout, max_retries=0)
        message = claude.messages.create(model=model, max_tokens=32, messages=[{"role": "user", "content": "Say hi"}])
        assert message.content and message.content[0].type == "text", "no text block"
        return message.stop_reason or ""

    bad = openai.OpenAI(base_url=base_url, api_key="sk-not-a-key", timeout=timeout, max_retries=0)
    return [
        _timed("GET /v1/models", models),
        _timed("chat completion", chat),
        _timed("chat completion, streamed", stream),
        _timed("Responses", responses),
        _timed("Anthropic Messages", messages_api),
        _timed(
            "a bad key is a 401",
            lambda: _status(401, lambda: bad.chat.completions.create(model=model, messages=messages)),  # type: ignore[arg-type]
        ),
        _timed(
            "an unknown model is a 404",
            lambda: _status(404, lambda: client.chat.completions.create(model="no-such-model", messages=messages)),  # type: ignore[arg-type]
        ),
    ]


def table(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    rows = [f"{'check':{width}}  result  {'ms':>7}  detail"]
    rows += [f"{c.name:{width}}  {'pass' if c.ok else 'FAIL':6}  {c.ms:7.0f}  {c.detail}" for c in checks]
    passed = sum(c.ok for c in checks)
    return "\n".join([*rows, f"{passed} passed, {len(checks) - passed} failed"])
