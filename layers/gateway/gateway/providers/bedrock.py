"""The adapter for Amazon Bedrock, through the model-neutral Converse and ConverseStream APIs.

One boto3 client per region per process signs with the Lambda role's IAM credentials, so
Bedrock needs no API key. boto3 blocks, so every call runs in a worker thread and a stream
is read one event per thread hop: the event loop never waits on a socket, and closing the
async generator (the client hung up) closes the botocore EventStream and its connection.

Bedrock's own retries are off: falling back to another provider on 429/5xx is the router's
job, and a retry here would only delay it while holding the reservation.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import threading
import uuid
import weakref
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

import anyio
import anyio.to_thread
import urllib3.exceptions
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EventStreamError,
    HTTPClientError,
    ParamValidationError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from gateway import aws, caches, toolkit
from gateway.config import settings
from gateway.errors import scrub
from gateway.providers.base import (
    UpstreamConnectError,
    UpstreamError,
    UpstreamHTTPError,
    UpstreamTimeout,
    chat_completion,
)

MAX_CONNECTIONS = 128  # concurrent Bedrock calls per process: the pool and the worker threads agree

# Error codes, as ClientError codes (ThrottlingException) or as stream exception events
# (throttlingException, normalised to a capital first letter), to the HTTP status the router acts on.
ERROR_STATUS = {
    "ThrottlingException": 429,
    "ServiceQuotaExceededException": 429,
    "ValidationException": 400,
    "AccessDeniedException": 403,
    "ResourceNotFoundException": 404,
    "ModelTimeoutException": 504,  # botocore says 408; it is the model that was slow, so a 5xx
    "ModelNotReadyException": 503,  # botocore says 429; the model is warming up, try elsewhere
    "ModelErrorException": 502,
    "ModelStreamErrorException": 502,
    "InternalServerException": 500,
    "ServiceUnavailableException": 503,
}

IMAGE_FORMATS = {"png": "png", "jpeg": "jpeg", "jpg": "jpeg", "gif": "gif", "webp": "webp"}

_END = object()  # next()'s default: StopIteration cannot cross a thread into a coroutine

_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()
_limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.CapacityLimiter] = weakref.WeakKeyDictionary()


def _forget_clients() -> None:
    with _clients_lock:
        _clients.clear()


caches.register(_forget_clients, f"{__name__}._clients")
caches.register(_limiters.clear, f"{__name__}._limiters")


def shared_client(region: str) -> Any:
    """The process's client for a region: building one loads the service model and owns the pool."""
    with _clients_lock:
        client = _clients.get(region)
        if client is None:
            cfg = settings()
            client = aws.session().client(
                "bedrock-runtime",
                region_name=region,
                config=Config(
                    read_timeout=cfg.upstream_timeout,
                    connect_timeout=cfg.upstream_connect_timeout,
                    retries={"mode": "standard", "total_max_attempts": 1},
                    max_pool_connections=MAX_CONNECTIONS,
                ),
            )
            _clients[region] = client
        return client


def _limiter() -> anyio.CapacityLimiter:
    """Our own thread budget, so streams waiting on slow models never starve anyio's default pool."""
    loop = asyncio.get_running_loop()
    limiter = _limiters.get(loop)
    if limiter is None:
        limiter = _limiters[loop] = anyio.CapacityLimiter(MAX_CONNECTIONS)
    return limiter


def _refused(message: str) -> UpstreamHTTPError:
    """A request Bedrock cannot take as sent: a client fault, so the caller sees a 400 naming it."""
    return UpstreamHTTPError(f"Amazon Bedrock cannot accept this request: {message}", status=400)


# ---------------------------------------------------------------------------------------------
# OpenAI request -> Converse request


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    return [
        str(part.get("text") or part.get("refusal") or "")
        for part in content or ()
        if isinstance(part, dict) and part.get("type") in ("text", "refusal")
    ]


def _image(part: dict[str, Any]) -> dict[str, Any]:
    """Converse takes image bytes, not URLs: only data: URLs can be forwarded."""
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url:
        raise _refused("an image_url part has no url")
    if not url.startswith("data:"):
        raise _refused(
            "image URLs are not supported by Bedrock's Converse API; send the image inline as a "
            "base64 data: URL (data:image/png;base64,...)"
        )
    header, _, data = url[5:].partition(",")
    mime, *params = header.split(";")
    kind, _, subtype = mime.strip().lower().partition("/")
    fmt = IMAGE_FORMATS.get(subtype) if kind == "image" else None
    if fmt is None:
        raise _refused(f"image type {mime or 'unknown'!r} is not supported (png, jpeg, gif and webp are)")
    if "base64" not in params:
        raise _refused("image data: URLs must be base64-encoded")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _refused("an image data: URL is not valid base64") from exc
    if not raw:
        raise _refused("an image data: URL is empty")
    return {"image": {"format": fmt, "source": {"bytes": raw}}}


def _user_blocks(content: Any) -> list[dict[str, Any]]:
    if content is None or isinstance(content, str):
        return [{"text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            if part.get("text"):
                blocks.append({"text": part["text"]})
        elif kind == "image_url":
            blocks.append(_image(part))
        else:
            raise _refused(f"content parts of type {kind!r} are not supported")
    return blocks


def _arguments(raw: Any) -> Any:
    """Converse wants the tool input as a JSON value; OpenAI history carries it as a JSON string."""
    try:
        return toolkit.tool_input(raw)
    except ValueError as exc:
        raise _refused("the arguments of an assistant tool call are not valid JSON") from exc


def _assistant_blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [{"text": t} for t in _texts(message.get("content")) if t]
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        blocks.append(
            {
                "toolUse": {
                    "toolUseId": call.get("id"),
                    "name": function.get("name"),
                    "input": _arguments(function.get("arguments")),
                }
            }
        )
    return blocks


def _tool_result(message: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI tool message is a Converse toolResult block inside a user turn."""
    content = message.get("content")
    if isinstance(content, dict | list) and not _is_parts(content):
        result: list[dict[str, Any]] = [{"json": content}]  # structured output some clients send
    else:
        result = [{"text": t} for t in _texts(content)]
    return {"toolResult": {"toolUseId": message.get("tool_call_id"), "content": result}}


def _is_parts(content: Any) -> bool:
    return isinstance(content, list) and all(isinstance(p, dict) and "type" in p for p in content)


def _conversation(raw: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """System blocks, and turns that alternate user/assistant as Converse requires."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for message in raw:
        role = message.get("role")
        if role in ("system", "developer"):
            system += [{"text": t} for t in _texts(message.get("content")) if t]
            continue
        if role == "user":
            blocks = _user_blocks(message.get("content"))
        elif role == "assistant":
            blocks = _assistant_blocks(message)
        elif role == "tool":
            role, blocks = "user", [_tool_result(message)]
        else:
            raise _refused(f"messages with role {role!r} are not supported")
        toolkit.add_turn(turns, role, blocks)  # Converse refuses empty turns and wants them to alternate
    return system, turns


def _inference(body: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if limit is not None:
        config["maxTokens"] = int(limit)
    if body.get("temperature") is not None:
        # OpenAI allows 0-2, Converse 0-1: clamp rather than refuse, since a refusal is a client
        # fault that would stop the fallback to providers that accept the value.
        config["temperature"] = min(float(body["temperature"]), 1.0)
    if body.get("top_p") is not None:
        config["topP"] = float(body["top_p"])
    stops = toolkit.stop_sequences(body.get("stop"))
    if stops:
        config["stopSequences"] = stops
    return config


def _tool_config(body: dict[str, Any], turns: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Converse has no tool_choice "none": the tools are left out, unless the history holds
    toolUse/toolResult blocks, which Converse refuses without a toolConfig; then the tools stay
    and the model chooses (as with "auto")."""
    specs = []
    for tool in body.get("tools") or ():
        function = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
        if not isinstance(function, dict):
            continue
        spec: dict[str, Any] = {
            "name": function.get("name"),
            "inputSchema": {"json": function.get("parameters") or {"type": "object", "properties": {}}},
        }
        if function.get("description"):
            spec["description"] = function["description"]
        specs.append({"toolSpec": spec})
    if not specs:
        return None
    choice = body.get("tool_choice")
    if choice == "none":
        history = any("toolUse" in b or "toolResult" in b for turn in turns for b in turn["content"])
        return {"tools": specs} if history else None
    config: dict[str, Any] = {"tools": specs}
    if choice == "auto":
        config["toolChoice"] = {"auto": {}}
    elif choice == "required":
        config["toolChoice"] = {"any": {}}
    elif isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if not name:
            raise _refused("tool_choice names no function")
        config["toolChoice"] = {"tool": {"name": name}}
    return config


def converse_request(body: dict[str, Any]) -> dict[str, Any]:
    """The Converse (and ConverseStream) parameters for an OpenAI chat completions body."""
    system, turns = _conversation(body.get("messages") or ())
    request: dict[str, Any] = {"modelId": body["model"], "messages": turns}
    if system:
        request["system"] = system
    if inference := _inference(body):
        request["inferenceConfig"] = inference
    if tools := _tool_config(body, turns):
        request["toolConfig"] = tools
    extra = body.get("additionalModelRequestFields")
    if isinstance(extra, dict) and extra:
        request["additionalModelRequestFields"] = extra
    return request


# ---------------------------------------------------------------------------------------------
# Converse response -> OpenAI response


def usage(raw: Any) -> dict[str, Any]:
    """Bedrock counts cache reads and writes apart from inputTokens; OpenAI's prompt_tokens holds all."""
    return toolkit.openai_usage_of(
        raw, ("inputTokens", "outputTokens", "cacheReadInputTokens", "cacheWriteInputTokens")
    )


def completion(response: dict[str, Any], model: str) -> dict[str, Any]:
    """A chat.completion from a Converse response (reasoning blocks are not forwarded)."""
    blocks = ((response.get("output") or {}).get("message") or {}).get("content") or ()
    text = "".join(b["text"] for b in blocks if isinstance(b.get("text"), str))
    calls = [
        {
            "id": b["toolUse"]["toolUseId"],
            "type": "function",
            "function": {"name": b["toolUse"]["name"], "arguments": toolkit.tool_arguments(b["toolUse"].get("input"))},
        }
        for b in blocks
        if isinstance(b.get("toolUse"), dict)
    ]
    message: dict[str, Any] = {"role": "assistant", "content": text or (None if calls else ""), "refusal": None}
    if calls:
        message["tool_calls"] = calls
    return chat_completion(
        f"chatcmpl-{uuid.uuid4().hex}",
        model,
        message,
        toolkit.finish_reason(response.get("stopReason")),
        usage(response.get("usage")),
    )


class StreamTranslator(toolkit.Chunks):
    """ConverseStream events in, chat.completion.chunk dicts out.

    Each toolUse content block becomes one OpenAI tool call with its own stable `index`; its
    id and name come first, then the input fragments exactly as Bedrock sent them.
    """

    def __init__(self, model: str) -> None:
        super().__init__(model, f"chatcmpl-{uuid.uuid4().hex}")
        self.finished = False

    def feed(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        out = [] if _exception(event) else self.start()  # messageStart, or whatever comes first if a model skips it
        if "contentBlockStart" in event:
            start = event["contentBlockStart"]
            tool = (start.get("start") or {}).get("toolUse")
            if tool:
                out.append(self.tool_call(start["contentBlockIndex"], tool["toolUseId"], tool["name"]))
        elif "contentBlockDelta" in event:
            block = event["contentBlockDelta"]
            delta = block.get("delta") or {}
            if delta.get("text"):
                out.append(self.chunk({"content": delta["text"]}))
            fragment = (delta.get("toolUse") or {}).get("input")
            out += self.arguments(block.get("contentBlockIndex", -1), fragment or "")
        elif "contentBlockStop" in event:
            out += self.tool_stop(event["contentBlockStop"].get("contentBlockIndex", -1))
        elif "messageStop" in event:
            self.finished = True
            out.append(self.chunk({}, toolkit.finish_reason(event["messageStop"].get("stopReason"))))
        elif "metadata" in event:
            out.append(self.usage(usage(event["metadata"].get("usage"))))
        elif name := _exception(event):
            message = (event[name] or {}).get("message", "")
            raise EventStreamError({"Error": {"Code": name, "Message": message}}, "ConverseStream")
        return out


def _exception(event: dict[str, Any]) -> str | None:
    """An exception delivered as an event dict (botocore itself raises EventStreamError instead)."""
    return next((k for k in event if k.endswith("Exception")), None)


# ---------------------------------------------------------------------------------------------
# The adapter


class Bedrock:
    def __init__(self, region: str | None, provider: str, client: Any | None = None) -> None:
        self.region = region or settings().region
        self.provider = provider
        self._client = client

    async def _get_client(self) -> Any:
        if self._client is None:  # built off the loop: loading the service model takes tens of ms
            self._client = await anyio.to_thread.run_sync(shared_client, self.region)
        return self._client

    def _failure(self, exc: BaseException) -> UpstreamError:
        """botocore's exceptions as the failures the router understands."""
        name = self.provider
        if isinstance(exc, ClientError):  # EventStreamError (an exception event) is one too
            error = exc.response.get("Error") or {}
            code = str(error.get("Code") or "")
            meta = exc.response.get("ResponseMetadata") or {}
            status = int(ERROR_STATUS.get(code[:1].upper() + code[1:]) or meta.get("HTTPStatusCode") or 502)
            where = " in the stream" if isinstance(exc, EventStreamError) else ""
            detail = scrub(str(error.get("Message") or "").strip()) or "no message"
            return UpstreamHTTPError(
                f"{name} failed{where} with {code or 'an error'} (HTTP {status}): {detail}",
                status=status,
                retry_after=_retry_after(meta.get("HTTPHeaders") or {}),
            )
        if isinstance(exc, ParamValidationError):  # botocore checks the request against the model first
            return _refused(scrub(" ".join(str(exc).split())))
        if isinstance(exc, ReadTimeoutError | ConnectTimeoutError | urllib3.exceptions.TimeoutError):
            return UpstreamTimeout(f"{name} timed out", sent=not isinstance(exc, ConnectTimeoutError))
        if isinstance(exc, BotoConnectionError | HTTPClientError | urllib3.exceptions.HTTPError):
            # EndpointConnectionError, ConnectionClosedError, ResponseStreamingError, a cut stream
            return UpstreamConnectError(f"{name} could not be reached or cut the connection: {type(exc).__name__}")
        return UpstreamError(f"{name} failed: {type(exc).__name__}: {scrub(str(exc))}")  # NoCredentialsError...

    async def _converse(self, body: dict[str, Any], stream: bool) -> dict[str, Any]:
        """Converse or ConverseStream in a worker thread, its failures as upstream errors."""
        client = await self._get_client()
        operation = client.converse_stream if stream else client.converse
        try:
            # abandon_on_cancel: a client that hangs up is not kept waiting for the model
            return await anyio.to_thread.run_sync(
                functools.partial(operation, **converse_request(body)), abandon_on_cancel=True, limiter=_limiter()
            )
        except (BotoCoreError, ClientError, urllib3.exceptions.HTTPError) as exc:
            raise self._failure(exc) from exc

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        return completion(await self._converse(body, stream=False), body["model"])

    async def stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        response = await self._converse(body, stream=True)
        events = response["stream"]
        translator = StreamTranslator(body["model"])
        try:
            iterator: Iterator[dict[str, Any]] = iter(events)  # EventStream iterates; it has no __next__
            while True:
                try:
                    event = await anyio.to_thread.run_sync(
                        next, iterator, _END, abandon_on_cancel=True, limiter=_limiter()
                    )
                    if event is _END:
                        break
                    chunks = translator.feed(event)
                except (BotoCoreError, ClientError, urllib3.exceptions.HTTPError) as exc:
                    raise self._failure(exc) from exc
                for chunk in chunks:
                    yield chunk
        finally:
            # Runs on normal end, on error, on aclose() and on cancellation alike; closing the
            # connection also wakes a worker thread still blocked reading it.
            close = getattr(events, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()
        if not translator.finished:
            raise UpstreamConnectError(f"{self.provider} ended the stream before it was complete")


def _retry_after(headers: dict[str, Any]) -> float | None:
    try:
        value = headers.get("retry-after")
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
