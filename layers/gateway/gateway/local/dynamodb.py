"""A moto DynamoDB server on loopback with the template's tables, for the local server and tests."""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LocalDynamo:
    endpoint: str
    tables: dict[str, str]  # environment variable -> table name
    server: object

    def stop(self) -> None:
        self.server.stop()  # type: ignore[attr-defined]


def start(port: int = 0, prefix: str = "gateway", template: Path = TEMPLATE) -> LocalDynamo:
    """Start moto's server, point this process's boto3 at it, and create the tables."""
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto logs every request otherwise
    port = port or free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for name, value in FAKE_CREDENTIALS.items():
        os.environ.setdefault(name, value)
    os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = endpoint
    names = {logical: f"{prefix}-{env.split('_')[0].lower()}" for logical, env in TABLE_ENV.items()}
    client = boto3.client("dynamodb", endpoint_url=endpoint, region_name=FAKE_CREDENTIALS["AWS_REGION"])
    create_all(client, template, names)
    tables = {TABLE_ENV[logical]: name for logical, name in names.items()}
    os.environ.update(tables)
    return LocalDynamo(endpoint=endpoint, tables=tables, server=server)
