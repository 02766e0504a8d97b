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
import contextlib
import functools
import threading
import weakref
from collections.abc import AsyncIterator, Iterator
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

from gateway import aws, caches
from gateway.config import settings
from gateway.errors import scrub
from gateway.upstream import (
    UpstreamConnectError,
    UpstreamError,
    UpstreamHTTPError,
    UpstreamTimeout,
)
from gateway.wire.converse.answer import completion
from gateway.wire.converse.request import converse_request, refused
from gateway.wire.converse.stream import StreamTranslator

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
            return refused(scrub(" ".join(str(exc).split())))
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
