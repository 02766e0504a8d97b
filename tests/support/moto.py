"""moto's DynamoDB for the tests: the local emulator in this process (the end-to-end stack's), or
moto's server in a process of its own."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.processes import stop, wait_until_listening
from tests.support.servers import free_port

REPO = Path(__file__).resolve().parents[2]


def local_dynamodb() -> tuple[Any, dict[str, str]]:
    """gateway-local's DynamoDB emulator on a free port, and the environment that reaches it (the
    endpoint, fake credentials and table names); this process's environment is left as it was."""
    from gateway.local import dynamodb

    before = dict(os.environ)
    try:
        local = dynamodb.start(0)  # sets the endpoint, fake credentials and table names
        env = {k: v for k, v in os.environ.items() if before.get(k) != v}
    finally:
        os.environ.clear()
        os.environ.update(before)
    return local, env


@contextlib.contextmanager
def moto_server(log: Path) -> Iterator[str]:
    """moto's server in a process of its own, so no mock_aws in this process can touch its data."""
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=out
        )
    try:
        wait_until_listening(process, port, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)


@contextlib.contextmanager
def own_tables(server_env: dict[str, str], names: dict[str, str], **more: str) -> Iterator[Any]:
    """The template's tables under these names (logical id -> name) on the session's moto server, this
    process's environment pointing at them for the while, and a boto3 client of it; deleted after, so each
    test (or module) starts from empty tables without resetting the server the others share."""
    import boto3

    from gateway.storage.tables import TABLE_ENV, create_all
    from tests.support.stack import applied

    env = {**server_env, **{TABLE_ENV[logical]: name for logical, name in names.items()}, **more}
    with applied(env):
        client = boto3.client("dynamodb", endpoint_url=env["AWS_ENDPOINT_URL_DYNAMODB"])
        for name in names.values():  # left behind by a test that was killed
            with contextlib.suppress(client.exceptions.ResourceNotFoundException):
                client.delete_table(TableName=name)
        create_all(client, REPO / "template.yaml", names)
        try:
            yield client
        finally:
            for name in names.values():
                client.delete_table(TableName=name)
