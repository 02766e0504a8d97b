"""The request path's DynamoDB client: the JSON protocol, signed with SigV4, on kept-alive connections.

botocore spent half of the chat function's CPU per request (issue 23's profile); this client
builds a request from an `Op` whose payload is already in DynamoDB's typed JSON, signs it, sends
it on a kept-alive connection (storage/connections.py) and reads the answer with orjson.

It retries what botocore's standard mode retries (throttling, 5xx and transport failures, three
attempts, exponential backoff with full jitter), from the 50 ms base botocore keeps for DynamoDB
(its `_retry.json`) rather than the standard mode's second: a request waits on these, and the
callers retry further on their own schedule (chat/call.py). Each write the gateway sends is
conditional, so a retried write that had landed is recognised by its condition; the counters of
rate windows and provider health may count a landed-then-retried write twice, as botocore's did.
One client per event loop; every one is forgotten on restore (caches), with its credentials.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import weakref
from typing import Any

import orjson

from gateway import caches
from gateway.config import settings
from gateway.storage import signing
from gateway.storage.connections import HTTPError, Pool
from gateway.storage.ops import Op, StoreError, StoreUnavailable
from gateway.storage.singleflight import SingleFlight

MAX_ATTEMPTS = 3
BACKOFF_BASE_SECONDS = 0.05
MAX_BACKOFF_SECONDS = 20.0
CONNECT_TIMEOUT = 2.0
READ_TIMEOUT = 5.0
TARGET = "DynamoDB_20120810."
CONTENT_TYPE = "application/x-amz-json-1.0"


def endpoint() -> str:
    found = os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or os.environ.get("AWS_ENDPOINT_URL")
    return (found or f"https://dynamodb.{settings().region}.amazonaws.com").rstrip("/")


class DynamoClient:
    def __init__(self, url: str, region: str, read_timeout: float = READ_TIMEOUT) -> None:
        self.url = url
        self.pool = Pool(url, CONNECT_TIMEOUT, read_timeout)
        self.host = self.pool.netloc
        self.region = region
        self._credentials: signing.Credentials | None = None
        self._flight = SingleFlight()

    async def credentials(self) -> signing.Credentials:
        """Current credentials; a failure to get them is the store being unavailable (a 503, retried), not a 500."""
        now = time.time()
        if self._credentials is not None and self._credentials.fresh(now):
            return self._credentials
        try:
            self._credentials = await self._flight.do("credentials", self._resolve)
        except Exception as exc:
            raise StoreUnavailable("NoCredentials", f"{type(exc).__name__}: {exc}", 599) from exc
        return self._credentials

    async def _resolve(self) -> signing.Credentials:
        found = signing.from_environment()
        if found is not None:
            return found
        where = signing.container_request()
        if where is None:
            raise signing.NoCredentials("no AWS credentials in the environment or from a container endpoint")
        url, headers = where
        import httpx  # a rare call: once an hour or so, after a restore

        async with httpx.AsyncClient(timeout=CONNECT_TIMEOUT, trust_env=False) as http:
            answer = await http.get(url, headers=headers)
        answer.raise_for_status()
        return signing.from_container_answer(answer.json())

    async def send(self, op: Op) -> dict[str, Any]:
        """The answer of one call, retried as botocore's standard mode retries; StoreError if it is an error."""
        body = orjson.dumps(op.payload)
        for attempt in range(MAX_ATTEMPTS):
            try:
                return await self._once(op.action, body)
            except StoreError as exc:
                expired = exc.code == "ExpiredTokenException"  # renewed by _once: worth another attempt
                if not (exc.retryable or expired) or attempt == MAX_ATTEMPTS - 1:
                    if exc.retryable and not isinstance(exc, StoreUnavailable):
                        raise StoreUnavailable(exc.code, str(exc), exc.status, exc.body) from exc
                    raise
            await asyncio.sleep(random.random() * min(MAX_BACKOFF_SECONDS, BACKOFF_BASE_SECONDS * 2.0**attempt))
        raise AssertionError("unreachable")

    async def _once(self, action: str, body: bytes) -> dict[str, Any]:
        headers = {"content-type": CONTENT_TYPE, "x-amz-target": TARGET + action}
        signed = signing.sign(await self.credentials(), self.region, self.host, headers, body)
        try:
            response = await self.pool.post(signed, body)
        except HTTPError as exc:  # timeouts and transport failures
            raise StoreUnavailable(type(exc).__name__, str(exc), 599) from exc
        try:
            data = orjson.loads(response.body) if response.body else {}
        except orjson.JSONDecodeError:
            data = {}
        if response.status == 200:
            return data
        code = str(data.get("__type", "")).rsplit("#", 1)[-1] or f"HTTP{response.status}"
        message = data.get("message") or data.get("Message") or ""
        if response.status == 400 and code == "ExpiredTokenException":
            self._credentials = None  # read them again on the next attempt
        raise StoreError(code, message, response.status, data)


_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, DynamoClient] = weakref.WeakKeyDictionary()
caches.register(_clients.clear, f"{__name__}._clients")


def client() -> DynamoClient:
    """The client of the running loop (tests run several servers, each on its own loop)."""
    loop = asyncio.get_running_loop()
    found = _clients.get(loop)
    if found is None:
        timeout = float(os.environ.get("DYNAMODB_READ_TIMEOUT_SECONDS") or READ_TIMEOUT)  # both clients' (dynamo.py)
        found = _clients[loop] = DynamoClient(endpoint(), settings().region, timeout)
    return found
