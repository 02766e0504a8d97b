"""The end-to-end stack (conftest's `e2e_stack`: moto's DynamoDB, the fake upstream and the gateway),
the gateway's environment applied for a while (`applied`), and the state tests reset between them:
the emulator's tables and the fake providers' health."""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from gateway.caches import reset_caches
from tests.support.fake_upstream import FakeUpstream
from tests.support.servers import ServerThread


@dataclass
class Stack:
    env: dict[str, str]
    fake: FakeUpstream
    gateway: ServerThread
    dynamo: Any
    providers: tuple[str, ...]  # the extra catalog's providers

    @property
    def base_url(self) -> str:
        return f"{self.gateway.url}/v1"


@contextlib.contextmanager
def applied(env: dict[str, str]) -> Iterator[None]:
    """Set `env` (and reset the gateway's caches) for the duration; restore what was there after."""
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    reset_caches()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        reset_caches()


def reset_provider_health(provider_ids: Iterable[str], everything: bool = False) -> None:
    """Forget the shared health (failures, cooldowns, windows) of these providers, stored and cached.

    The gateway runs in this process, so its cache of provider states shows every state it wrote:
    only those items are deleted, unless `everything` (when the cache may have been cleared).
    """
    try:
        health = importlib.import_module("gateway.routing.health")
    except ModuleNotFoundError:  # a gateway without shared provider health
        return
    from gateway.config import settings
    from gateway.storage import dynamo, schema

    ids = [pid for pid in provider_ids if everything or health.state(pid)]
    deletes = [{"DeleteRequest": {"Key": schema.provider_key(pid)}} for pid in ids]
    for start in range(0, len(deletes), 25):
        dynamo.client().batch_write_item(RequestItems={settings().usage_table: deletes[start : start + 25]})
    health.forget()


def ensure_tables(stack: Stack) -> None:
    """Recreate the emulator's tables if they are gone.

    moto keeps one store per process, shared by its server and by `mock_aws`: a unit test that
    starts `mock_aws()` with its default reset empties the end-to-end emulator too.
    """
    from gateway.local.dynamodb import TEMPLATE
    from gateway.storage import dynamo
    from gateway.storage.tables import TABLE_ENV, create_all

    client = dynamo.client()
    names = {logical: stack.dynamo.tables[env] for logical, env in TABLE_ENV.items()}
    existing = set(client.list_tables()["TableNames"])
    if set(names.values()) <= existing:
        return
    for name in set(names.values()) & existing:
        client.delete_table(TableName=name)
    create_all(client, TEMPLATE, names)
