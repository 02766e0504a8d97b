"""One low-level DynamoDB client per process, and a codec for its typed attribute values.

The low-level client skips the resource layer's per-call overhead; the codec keeps numbers
as Decimal both ways, so money never passes through float. `AWS_ENDPOINT_URL_DYNAMODB`
(read by botocore itself) points everything at moto's server when running locally.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.config import Config

from gateway import caches

if TYPE_CHECKING:
    from collections.abc import Callable


_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


@caches.resettable
@lru_cache(maxsize=1)
def client() -> Any:
    from gateway import aws
    from gateway.config import settings

    return aws.session().client(
        "dynamodb",
        region_name=settings().region,
        config=Config(
            retries={"mode": "standard", "max_attempts": 3},
            connect_timeout=2,
            read_timeout=5,
            max_pool_connections=64,
            tcp_keepalive=True,
            # Every request is built here, from validated values; DynamoDB checks it again anyway. botocore's
            # client-side walk of each parameter was a tenth of the chat function's CPU (bench --profile).
            parameter_validation=False,
        ),
    )


def to_item(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _serializer.serialize(v) for k, v in values.items() if v is not None}


def from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deserializer.deserialize(v) for k, v in item.items()}


async def call(fn: Callable[..., Any], /, **kwargs: Any) -> Any:
    """Run a blocking boto3 call off the event loop, so one slow write never stalls other streams."""
    return await anyio.to_thread.run_sync(lambda: fn(**kwargs))
