"""The one shape of every write that guards money or limits: conditional, retried on what the refusal shows.

A write is built from a guess of what the item holds, and conditioned on limits rather than on
figures read earlier, so concurrent writers do not retry each other. When the guess was stale,
DynamoDB's refusal returns the item as it was (ALL_OLD), and the caller learns from it: try
again with a better guess, do what the item needs first (open an account, roll a month over),
give a verdict (a 429, "already settled"), or stop. `CLOCK` is the one place those plans read
the time, so tests can move it.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from gateway.storage.codec import to_item
from gateway.storage.dynamo import Op, Plan, StoreError

T = TypeVar("T")
CLOCK: Callable[[], float] = time.time


def now() -> float:
    return CLOCK()


@dataclass(frozen=True, slots=True)
class Done(Generic[T]):
    """What a refusal settled: the plan's result, without writing again."""

    value: T


def conditional(
    write: Callable[[], Op],
    landed: Callable[[dict[str, Any]], T],
    learn: Callable[[dict[str, Any] | None], Done[T] | Plan[Done[T] | None] | None],
    attempts: int,
    busy: Callable[[], Exception],
) -> Plan[T]:
    """Send `write()` until it lands (`landed` makes the result of its answer) or `learn` settles it.

    `learn` is given the item as the refusal showed it (None: there was none) and returns None to
    try again, having updated what `write` builds from, or a Done; it may be a plan itself, when
    it must write first. `busy()` is raised when no attempt landed.
    """
    for _ in range(attempts):
        try:
            answer = yield write()
        except StoreError as exc:
            if not exc.refused:
                raise
            verdict = learn(exc.old)
            if inspect.isgenerator(verdict):
                verdict = yield from verdict
            if verdict is not None:
                return verdict.value
            continue
        return landed(answer)
    raise busy()


def update(
    key: dict[str, Any],
    expression: str,
    condition: str | None = None,
    names: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    **more: Any,
) -> Op:
    """An UpdateItem of the usage table (where every account, provider and counter item lives)."""
    from gateway.config import settings

    payload: dict[str, Any] = {"TableName": settings().usage_table, "Key": key, "UpdateExpression": expression, **more}
    if condition:
        payload["ConditionExpression"] = condition
    if names:
        payload["ExpressionAttributeNames"] = names
    if values:
        payload["ExpressionAttributeValues"] = to_item(values)
    return Op("UpdateItem", payload)


def unless_refused(op: Op) -> Plan[bool]:
    """Send a write whose refusal means another writer got there first; whether it landed."""
    try:
        yield op
    except StoreError as exc:
        if not exc.refused:
            raise
        return False
    return True
