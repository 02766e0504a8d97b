"""A moto DynamoDB server on loopback with the template's tables, for the local server and tests.

`start` runs it in this process's threads (tests); `spawn` runs it as a child process
(`gateway-local`, the benchmark), so that its CPU and its GIL are not the gateway's:

    python -m gateway.local.dynamodb --port 8001 [--prefix gateway] [--parent PID]

prints `{"endpoint": ..., "tables": {...}, "pid": ...}` on one line when ready, and serves until
SIGTERM or SIGINT (or, with --parent, until that process is gone).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from gateway.storage.tables import TABLE_ENV, create_all

REPO_ROOT = Path(__file__).resolve().parents[4]
TEMPLATE = REPO_ROOT / "template.yaml"
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


# Where a running `gateway-local` says its emulator is, so `gateway-admin --local` finds it on any port.
def _state() -> Path:
    return Path(os.environ.get("GATEWAY_LOCAL_STATE") or Path(tempfile.gettempdir()) / "llm-gateway-local.json")


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def announce(endpoint: str) -> None:
    _state().write_text(json.dumps({"endpoint": endpoint, "pid": os.getpid()}))


def running_endpoint() -> str | None:
    """The emulator of a `gateway-local` that is running now, if one said where it is (a server that stopped left
    its file behind: uvicorn ends on the signal it caught, so no clean-up runs; its pid being gone says it)."""
    try:
        state = json.loads(_state().read_text())
        os.kill(int(state["pid"]), 0)  # raises if that process is gone
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return str(state["endpoint"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _item_level_transactions() -> None:
    """Make moto's transactions cost what they touch, not the size of every table they touch.

    moto deep-copies each table a transaction names, to roll back if it is cancelled: a
    settlement then costs O(table size) and the emulator slows as tests and benchmarks fill
    it (1.1 s a transaction at 5,000 items). A cancelled transaction can only have changed
    the items it names, so snapshotting those is the same rollback at a fraction of the cost.
    """
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table

    if getattr(DynamoDBBackend, "_item_level_transactions", False):
        return
    whole_table = DynamoDBBackend.transact_write_items

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        saved = []
        for entry in transact_items:
            op = next(iter(entry.values()))
            table = self.tables.get(op.get("TableName"))
            if table is None:
                continue
            try:
                hash_key, range_key = self.get_keys_value(table, op.get("Key") or op.get("Item") or {})
            except Exception:  # moto reports a malformed key itself
                continue
            saved.append((table, hash_key, range_key, copy.deepcopy(table.get_item(hash_key, range_key))))
        Table.__deepcopy__ = lambda table, memo: table  # moto's own whole-table snapshot becomes free
        try:
            whole_table(self, transact_items)
        except Exception:
            for table, hash_key, range_key, item in reversed(saved):
                holder = table.items[hash_key] if range_key is not None else table.items
                slot = range_key if range_key is not None else hash_key
                if item is None:
                    holder.pop(slot, None)
                else:
                    holder[slot] = item
            raise
        finally:
            del Table.__deepcopy__

    DynamoDBBackend.transact_write_items = transact_write_items
    DynamoDBBackend._item_level_transactions = True


def canonical_numbers() -> None:
    """Store numbers as DynamoDB does, canonically: 0.0000002 - 0.0000002 is `0`.

    moto keeps Decimal's own text (`0E-7`), which its next addition to the same attribute
    cannot parse; a balance or a held amount that returns to zero hits it at once.
    """
    from moto.dynamodb.models.dynamo_type import DynamoType

    if getattr(DynamoType, "_canonical_numbers", False):
        return

    def canonical(operation: Any) -> Any:
        def run(self: Any, other: Any) -> Any:
            result = operation(self, other)
            if result.is_number():
                result.value = format(Decimal(result.value).normalize(), "f")
            return result

        return run

    DynamoType.__add__ = canonical(DynamoType.__add__)
    DynamoType.__sub__ = canonical(DynamoType.__sub__)
    DynamoType._canonical_numbers = True


class SerialMotoServer:
    """moto's DynamoDB on an HTTP server that handles one request at a time, on kept-alive connections.

    moto's backend is not thread-safe (a transaction deep-copies every table while another
    thread writes to one, and fails), while DynamoDB applies each write atomically;
    serialising requests keeps the emulator faithful under concurrency tests and benchmarks.
    """

    def __init__(self, port: int) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        from gateway.local.keepalive import KeepAliveServer

        _item_level_transactions()
        canonical_numbers()
        backend = DomainDispatcherApplication(create_backend_app)
        # uvicorn, not werkzeug's server, which closes every connection: clients keep theirs, as with DynamoDB.
        self.server = KeepAliveServer(backend, port, threading.Lock())
        self.port = self.server.port

    def stop(self) -> None:
        self.server.shutdown()


class ChildServer:
    """moto's server in a child process (`spawn`)."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        from gateway.local.child import stop

        stop(self.process, timeout=5)


@dataclass
class LocalDynamo:
    endpoint: str
    tables: dict[str, str]  # environment variable -> table name
    server: SerialMotoServer | ChildServer

    def stop(self) -> None:
        self.server.stop()


def point_at(endpoint: str, tables: dict[str, str]) -> None:
    """Point this process's boto3 and the gateway's settings at a local emulator, as a Lambda's environment does."""
    for name, value in FAKE_CREDENTIALS.items():
        os.environ.setdefault(name, value)
    os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = endpoint
    os.environ.update(tables)


def start(port: int = 0, prefix: str = "gateway", template: Path = TEMPLATE) -> LocalDynamo:
    """Start moto's server in this process, point this process's boto3 at it, and create the tables."""
    import boto3

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto logs every request otherwise
    server = SerialMotoServer(port or free_port())
    endpoint = f"http://127.0.0.1:{server.port}"
    names = {logical: f"{prefix}-{env.split('_')[0].lower()}" for logical, env in TABLE_ENV.items()}
    tables = {TABLE_ENV[logical]: name for logical, name in names.items()}
    point_at(endpoint, tables)
    client = boto3.client("dynamodb", endpoint_url=endpoint, region_name=FAKE_CREDENTIALS["AWS_REGION"])
    create_all(client, template, names)
    return LocalDynamo(endpoint=endpoint, tables=tables, server=server)


def spawn(port: int = 0, prefix: str = "gateway") -> subprocess.Popen[bytes]:
    """Start moto's server as a child process that ends with this one; `ready` then waits for it.

    Two steps so the caller can do other start-up work (catalog discovery) while moto imports.
    The child has a session of its own: a Ctrl-C reaches only the parent, which stops the child
    after its last requests have settled.
    """
    command = [sys.executable, "-m", "gateway.local.dynamodb", "--port", str(port or free_port())]
    command += ["--prefix", prefix, "--parent", str(os.getpid())]
    return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, start_new_session=True)


def ready(process: subprocess.Popen[bytes], timeout: float = 60.0) -> LocalDynamo:
    """Wait for a spawned server's ready line and point this process at it."""
    from gateway.local.child import read_ready

    found = read_ready(process, timeout, "moto's DynamoDB server")
    process.stdout.close()  # type: ignore[union-attr]  # it prints nothing else
    point_at(found["endpoint"], found["tables"])
    return LocalDynamo(endpoint=found["endpoint"], tables=found["tables"], server=ChildServer(process))


def serve(local: LocalDynamo, **extra: object) -> None:
    """Announce a started server on stdout (one JSON line, with `extra`), then serve until signalled."""
    from gateway.local.child import wait_for_signal

    print(json.dumps({"endpoint": local.endpoint, "tables": local.tables, "pid": os.getpid(), **extra}), flush=True)
    try:
        wait_for_signal()
    finally:
        local.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--prefix", default="gateway", help="table names: PREFIX-keys, PREFIX-usage")
    parser.add_argument("--parent", type=int, help="end when this process does")
    args = parser.parse_args(argv)
    if args.parent:
        from gateway.local.child import die_with_parent

        die_with_parent(args.parent)
    serve(start(args.port, prefix=args.prefix))


if __name__ == "__main__":
    main()
