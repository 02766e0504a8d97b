"""The usage table's stream, read the way Lambda's event source mapping reads it, for gateway-local and tests.

On AWS, TallyFunction is invoked with the stream's new records (template.yaml); here the emulator's
stream is read on demand, and each batch handed to the same `tallies.count`. The local app drains
it before answering any read, so statistics are current locally; on AWS they follow the stream,
within about a second (MaximumBatchingWindowInSeconds).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from gateway.config import settings
from gateway.stats import tallies
from gateway.storage import dynamo

BATCH = 500  # template.yaml's BatchSize


class StreamReader:
    """One reader per process: it keeps each shard's position, and one lock orders its batches."""

    def __init__(self) -> None:
        self._positions: dict[tuple[str, str], str] = {}  # (stream, shard) -> the next iterator
        self._closed: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def drain(self) -> int:
        """Count every record the stream holds that was not counted yet; how many batches went to the counters."""
        with self._lock:
            streams = dynamo.streams_client()
            found = streams.list_streams(TableName=settings().usage_table)["Streams"]
            if not found:
                return 0
            arn = found[-1]["StreamArn"]
            batches = 0
            for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
                where = (arn, shard["ShardId"])
                if where not in self._closed:
                    batches += self._read(streams, where)
            return batches

    def _read(self, streams: Any, where: tuple[str, str]) -> int:
        """Count a shard's records from where this reader stopped; how many batches it counted."""
        arn, shard_id = where
        iterator = self._positions.get(where)
        if iterator is None:
            iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON")
            iterator = iterator["ShardIterator"]
        batches = 0
        while True:
            page = streams.get_records(ShardIterator=iterator, Limit=BATCH)
            if page["Records"]:
                tallies.count(page["Records"], time.time())
                batches += 1
            following = page.get("NextShardIterator")
            if following is None:
                self._closed.add(where)
                return batches
            iterator = self._positions[where] = following
            if not page["Records"]:
                return batches


_reader = StreamReader()


def drain() -> int:
    return _reader.drain()
