"""A scripted OpenAI-compatible upstream that plays one agent task: write hello.txt, then say "done".

POST /v1/chat/completions, streamed (with `stream_options.include_usage`) or whole. While the
conversation holds no tool result, it answers with one tool call that writes `hi` into hello.txt,
choosing the tool by what the request offers:

    Write {file_path, content}            Claude Code
    apply_patch (custom tool)             Codex with shipped metadata (gpt-5.5): an Add File patch
    exec (custom tool, code mode)         Codex's default models: JavaScript calling tools.apply_patch
    exec_command {cmd}                    Codex with a model it does not know
    Bash {command}                        Claude Code, when Write is not offered
    any function with a string `path`/`content` pair, else the first tool (the openai-agents SDK)

A custom tool reaches an OpenAI-compatible upstream either as it is (`{"type": "custom", ...}`, for
providers whose chat completions take custom tools) or as a function tool with one string
parameter `input`; the call is answered in the same form. Once a tool result is present, it
answers with the text "done". Usage is reported honestly (about four bytes of prompt a token).
`cut_streams` makes up to that many streamed answers drop the connection after their first chunk
(none after the first whole request).
Every request is recorded.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support.servers import LoopbackApp

FILE_NAME = "hello.txt"
FILE_TEXT = "hi"
FINAL_TEXT = "done"
PATCH = f"*** Begin Patch\n*** Add File: {FILE_NAME}\n+{FILE_TEXT}\n*** End Patch\n"
CODE_MODE_SCRIPT = f"const r = await tools.apply_patch({json.dumps(PATCH)});\ntext(r);"
SHELL = f"printf {FILE_TEXT} > {FILE_NAME}"
CHUNK_GAP = 0.005


class CutConnection(Exception):
    """Raised inside a streaming body: uvicorn drops the connection mid-response."""


@dataclass
class Seen:
    """One request as the upstream received it, and what it answered."""

    body: dict[str, Any]
    size: int
    received_at: float = field(default_factory=time.time)
    answer: str = ""  # "tool:NAME", "text", "cut"

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    @property
    def tool_names(self) -> list[str]:
        return [tool_name(t) for t in self.body.get("tools") or ()]


def tool_name(tool: dict[str, Any]) -> str:
    inner = tool.get(tool.get("type") or "function")
    return str((inner if isinstance(inner, dict) else tool).get("name", "?"))


def _parameters(tool: dict[str, Any]) -> dict[str, Any]:
    inner = tool.get("function") if isinstance(tool.get("function"), dict) else tool
    params = inner.get("parameters")
    return params.get("properties", {}) if isinstance(params, dict) else {}


def _single_input(tool: dict[str, Any]) -> bool:
    """A custom tool as the gateway hands it to a provider that takes no custom tools."""
    props = _parameters(tool)
    return set(props) == {"input"} and (props["input"] or {}).get("type") == "string"


def _base(name: str) -> str:
    """A tool's own name without a namespace (`functions.exec`, `functions__exec`)."""
    for separator in (".", "__", "/", ":"):
        name = name.rsplit(separator, 1)[-1]
    return name


def _has_tool_result(messages: list[Any]) -> bool:
    return any(isinstance(m, dict) and m.get("role") == "tool" for m in messages)


def choose_call(body: dict[str, Any], workdir: str | None) -> tuple[dict[str, Any], str] | None:
    """The tool call that writes the file, for the tools this request offers: (tool, arguments or input)."""
    tools = [t for t in body.get("tools") or () if isinstance(t, dict)]
    by_base: dict[str, dict[str, Any]] = {}
    for tool in tools:
        by_base.setdefault(_base(tool_name(tool)), tool)
    path = f"{workdir.rstrip('/')}/{FILE_NAME}" if workdir else FILE_NAME

    def custom_input(tool: dict[str, Any], text: str) -> str:
        return text if tool.get("type") == "custom" else json.dumps({"input": text})

    if "Write" in by_base:
        return by_base["Write"], json.dumps({"file_path": path, "content": FILE_TEXT})
    patch = by_base.get("apply_patch")
    if patch is not None and (patch.get("type") == "custom" or _single_input(patch)):
        return patch, custom_input(patch, PATCH)
    code = by_base.get("exec")
    if code is not None and (code.get("type") == "custom" or _single_input(code)):
        return code, custom_input(code, CODE_MODE_SCRIPT)
    if "exec_command" in by_base:
        return by_base["exec_command"], json.dumps({"cmd": SHELL, **({"workdir": workdir} if workdir else {})})
    if "Bash" in by_base:
        return by_base["Bash"], json.dumps({"command": SHELL})
    for tool in tools:  # an SDK's own function tool: write_file(path, content) or the like
        props = _parameters(tool)
        if "content" in props:
            name_param = next((p for p in props if p != "content"), None)
            args = {"content": FILE_TEXT, **({name_param: path} if name_param else {})}
            return tool, json.dumps(args)
    return None


def _usage(prompt_bytes: int, completion: str) -> dict[str, Any]:
    prompt = max(1, prompt_bytes // 4)
    out = max(1, len(completion) // 4)
    return {"prompt_tokens": prompt, "completion_tokens": out, "total_tokens": prompt + out}


class ScriptedUpstream(LoopbackApp):
    name = "agents-upstream"

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.workdir: str | None = None
        self.cut_streams = 0
        self.lock = threading.Lock()
        routes = [Route(f"/v1/{p}", self._chat, methods=["POST"]) for p in ("chat/completions", "chat/completions/")]
        routes.append(Route("/v1/models", self._models, methods=["GET"]))
        self.app = Starlette(routes=routes)

    def reset(self, workdir: str | None = None, cut_streams: int = 0) -> None:
        with self.lock:
            self.seen = []
            self.workdir = workdir
            self.cut_streams = cut_streams

    async def _models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": []})

    async def _chat(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            return JSONResponse({"error": {"message": "not JSON", "type": "invalid_request_error"}}, status_code=400)
        seen = Seen(body=body, size=len(raw))
        with self.lock:
            self.seen.append(seen)
            cut = bool(body.get("stream")) and self.cut_streams > 0
            if cut:
                self.cut_streams -= 1
            elif not body.get("stream"):
                self.cut_streams = 0  # the agent fell back to a whole request: the rest stream normally
        messages = body.get("messages") or []
        prompt_bytes = len(json.dumps(messages)) + len(json.dumps(body.get("tools") or []))
        model = body.get("model", "?")
        call = None if _has_tool_result(messages) else choose_call(body, self.workdir)
        if call is None:
            seen.answer = "text"
            message: dict[str, Any] = {"role": "assistant", "content": FINAL_TEXT}
            finish, completion = "stop", FINAL_TEXT
        else:
            tool, payload = call
            kind = "custom" if tool.get("type") == "custom" else "function"
            name = tool_name(tool)
            seen.answer = f"tool:{name}"
            field_name = "input" if kind == "custom" else "arguments"
            tool_call = {"id": f"call_{uuid.uuid4().hex[:20]}", "type": kind, kind: {"name": name, field_name: payload}}
            message = {"role": "assistant", "content": None, "tool_calls": [tool_call]}
            finish, completion = "tool_calls", payload
        usage = _usage(prompt_bytes, completion)
        rid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        if not body.get("stream"):
            return JSONResponse(
                {
                    "id": rid,
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
                    "usage": usage,
                }
            )
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        if cut:
            seen.answer = "cut"
        return StreamingResponse(
            self._sse(rid, model, message, finish, usage if include_usage else None, cut),
            media_type="text/event-stream",
        )

    async def _sse(
        self, rid: str, model: str, message: dict[str, Any], finish: str, usage: dict[str, Any] | None, cut: bool
    ):
        created = int(time.time())

        def chunk(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> bytes:
            choices = [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]
            payload = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model}
            return f"data: {json.dumps({**payload, 'choices': choices, **extra})}\n\n".encode()

        yield chunk({"role": "assistant", "content": ""})
        calls = message.get("tool_calls")
        if calls:
            call = calls[0]
            kind = call["type"]
            field_name = "input" if kind == "custom" else "arguments"
            text = call[kind][field_name]
            half = len(text) // 2
            first = {"index": 0, "id": call["id"], "type": kind, kind: {"name": call[kind]["name"], field_name: ""}}
            pieces = [
                first,
                {"index": 0, kind: {field_name: text[:half]}},
                {"index": 0, kind: {field_name: text[half:]}},
            ]
        else:
            pieces = [None, {"content": "do"}, {"content": "ne"}]
        for number, piece in enumerate(pieces):
            if piece is None:
                continue
            await asyncio.sleep(CHUNK_GAP)
            yield chunk({"tool_calls": [piece]} if calls else piece)
            if cut and number >= 1:
                raise CutConnection
        yield chunk({}, finish)
        if usage is not None:
            payload = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model}
            yield f"data: {json.dumps({**payload, 'choices': [], 'usage': usage})}\n\n".encode()
        yield b"data: [DONE]\n\n"

    def summary(self) -> list[str]:
        return [
            f"{'stream' if s.stream else 'whole'} {s.size} B, {len(s.body.get('messages') or [])} messages, "
            f"tools {s.tool_names} -> {s.answer}"
            for s in self.seen
        ]
