"""DynamoDB for the whole gateway: the request path's lean client, boto3 everywhere else, one way to drive both.

Code that reads or writes an item describes each call as an `Op` and its retry logic as a plan: a
generator that yields Ops, is sent their answers (or thrown their StoreErrors), and returns a
result. `run` drives a plan on the request path's async client (storage/client.py: no botocore);
`run_sync` drives the same plan on boto3, for the admin tool, the sweeper and the statistics
reads, whose credentials may come from a profile. So each conditional write and what it learns
from a refusal is written once.

`AWS_ENDPOINT_URL_DYNAMODB` points both at moto's server when running locally.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from functools import lru_cache
from typing import Any, TypeVar

import anyio.to_thread

from gateway import caches
from gateway.storage.client import client as lean
from gateway.storage.codec import from_item, to_item
from gateway.storage.ops import Op, StoreError, StoreUnavailable

__all__ = [
    "Op",
    "Plan",
    "StoreError",
    "StoreUnavailable",
    "call",
    "client",
    "from_item",
    "run",
    "run_sync",
    "send",
    "send_sync",
    "to_item",
]

T = TypeVar("T")
Plan = Generator[Op, Any, T]


async def send(op: Op) -> dict[str, Any]:
    return await lean().send(op)


async def run(plan: Plan[T]) -> T:
    """Drive a plan on the lean async client: each answer is sent into it, each StoreError thrown into it."""
    answer: Any = None
    error: StoreError | None = None
    try:
        while True:
            op = plan.throw(error) if error else plan.send(answer)
            try:
                answer, error = await send(op), None
            except StoreError as exc:
                answer, error = None, exc
    except StopIteration as done:
        return done.value


@caches.resettable
@lru_cache(maxsize=1)
def client() -> Any:
    """boto3's low-level client, for everything off the request path."""
    return _boto3("dynamodb")


@caches.resettable
@lru_cache(maxsize=1)
def streams_client() -> Any:
    """boto3's client of the tables' streams (which the local server reads as TallyFunction's trigger does)."""
    return _boto3("dynamodbstreams")


def _boto3(service: str) -> Any:
    """A boto3 client of DynamoDB or of its streams, on the same endpoint."""
    import os

    from botocore.config import Config

    from gateway import aws
    from gateway.config import settings

    return aws.session().client(
        service,
        endpoint_url=os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or None,
        region_name=settings().region,
        config=Config(
            retries={"mode": "standard", "max_attempts": 3},
            connect_timeout=2,
            read_timeout=float(os.environ.get("DYNAMODB_READ_TIMEOUT_SECONDS") or 5),
            max_pool_connections=64,
            tcp_keepalive=True,
            parameter_validation=False,  # every request is built here; DynamoDB checks it again anyway
        ),
    )


def _snake(action: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in action).lstrip("_")


def send_sync(op: Op) -> dict[str, Any]:
    """One call on boto3, its ClientError turned into the StoreError the plans expect."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return getattr(client(), _snake(op.action))(**op.payload)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 400))
        found = StoreError(str(error.get("Code", "")), str(error.get("Message", "")), status, exc.response)
        if found.retryable:  # what botocore's own retries could not get past: the store is away
            raise StoreUnavailable(found.code, str(found), status, exc.response) from exc
        raise found from exc
    except BotoCoreError as exc:
        raise StoreUnavailable(type(exc).__name__, str(exc), 599) from exc


def run_sync(plan: Plan[T]) -> T:
    """Drive a plan on boto3, as `run` drives it on the lean client."""
    answer: Any = None
    error: StoreError | None = None
    try:
        while True:
            op = plan.throw(error) if error else plan.send(answer)
            try:
                answer, error = send_sync(op), None
            except StoreError as exc:
                answer, error = None, exc
    except StopIteration as done:
        return done.value


async def call(fn: Callable[..., Any], /, **kwargs: Any) -> Any:
    """Run a blocking boto3 call off the event loop (statistics reads), so it never stalls other streams."""
    return await anyio.to_thread.run_sync(lambda: fn(**kwargs))
