"""The request path's DynamoDB client (gateway/storage/client.py) against a scripted DynamoDB on 127.0.0.1.

What botocore did for the request path, this client must do as well: sign every request so that AWS
accepts it (checked here with botocore's own SigV4 verifier of the same request), retry throttling and
5xx with backoff as the standard mode does and no more, map a refused condition to the item as it was,
and take its credentials from the environment or, under SnapStart, from the container credentials
endpoint, read again before they expire.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from gateway.storage import client as lean
from gateway.storage.ops import Op, StoreError, StoreUnavailable
from tests.support.servers import ServerThread
from tests.support.stack import applied

KEY, SECRET, TOKEN = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "session-token"


class FakeDynamo:
    """Answers each call from a script of (status, body); records every request it received."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, Any]]] = []
        self.requests: list[dict[str, Any]] = []
        self.credentials_served = 0
        self.expires_in = 3600.0
        self.url = ""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        if scope["path"] == "/credentials":
            self.credentials_served += 1
            expires = datetime.fromtimestamp(time.time() + self.expires_in, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            status, answer = (
                200,
                {
                    "AccessKeyId": f"ASIA{self.credentials_served}",
                    "SecretAccessKey": SECRET,
                    "Token": TOKEN,
                    "Expiration": expires,
                },
            )
            if headers.get("authorization") != "container-token":
                status, answer = 403, {"message": "bad token"}
        else:
            self.requests.append({"headers": headers, "body": body})
            status, answer = self.script.pop(0) if self.script else (200, {})
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/x-amz-json-1.0")],
            }
        )
        await send({"type": "http.response.body", "body": orjson.dumps(answer)})


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeDynamo]:
    app = FakeDynamo()
    server = ServerThread(app, name="fake-dynamodb").start()
    app.url = server.url
    try:
        yield app
    finally:
        server.stop()


@pytest.fixture
def dynamo(fake: FakeDynamo, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDynamo]:
    fake.script.clear()
    fake.requests.clear()
    fake.credentials_served = 0
    env = {
        "AWS_ENDPOINT_URL_DYNAMODB": fake.url,
        "AWS_ACCESS_KEY_ID": KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_SESSION_TOKEN": TOKEN,
        "AWS_REGION": "eu-west-1",
    }
    with applied(env):
        yield fake


def send(op: Op) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        return await lean.client().send(op)

    return asyncio.run(go())


def under_snapstart(monkeypatch: pytest.MonkeyPatch, url: str, token: str) -> None:
    """Lambda's environment under SnapStart: no keys, a container credentials endpoint and its token."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", f"{url}/credentials")
    monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", token)


GET = Op("GetItem", {"TableName": "t", "Key": {"pk": {"S": "a"}, "sk": {"S": "b"}}})


def test_a_request_is_signed_as_aws_signs_it(dynamo: FakeDynamo) -> None:
    dynamo.script.append((200, {"Item": {"pk": {"S": "a"}}}))
    assert send(GET) == {"Item": {"pk": {"S": "a"}}}
    sent = dynamo.requests[0]
    headers = sent["headers"]
    assert headers["x-amz-target"] == "DynamoDB_20120810.GetItem"
    assert headers["x-amz-security-token"] == TOKEN
    assert orjson.loads(sent["body"]) == GET.payload
    # botocore signs the same request, at the same time, with the same credentials: the same signature.
    request = AWSRequest(
        method="POST",
        url=f"http://{headers['host']}/",
        data=sent["body"],
        headers={k: headers[k] for k in ("content-type", "x-amz-target")},
    )
    signer = SigV4Auth(BotoCredentials(KEY, SECRET, TOKEN), "dynamodb", "eu-west-1")
    signer._timestamp = lambda: headers["x-amz-date"]  # type: ignore[method-assign]
    request.context["timestamp"] = headers["x-amz-date"]
    signer.add_auth(request)
    assert headers["authorization"] == request.headers["Authorization"]


def test_throttling_and_5xx_are_retried_as_the_standard_mode_retries_them(dynamo: FakeDynamo) -> None:
    throttled = {"__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException", "message": "Rate exceeded"}
    dynamo.script += [(400, throttled), (500, {"__type": "InternalServerError"}), (200, {"Item": {}})]
    assert send(GET) == {"Item": {}}
    assert len(dynamo.requests) == 3
    dynamo.script += [(400, throttled)] * 3
    with pytest.raises(StoreUnavailable) as caught:
        send(GET)
    assert caught.value.code == "ThrottlingException" and len(dynamo.requests) == 6  # three attempts, no more


def test_a_refused_condition_is_not_retried_and_shows_the_item_as_it_was(dynamo: FakeDynamo) -> None:
    refused = {
        "__type": "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException",
        "message": "The conditional request failed",
        "Item": {"balance": {"N": "-0.5"}, "month": {"S": "2026-12"}},
    }
    dynamo.script.append((400, refused))
    with pytest.raises(StoreError) as caught:
        send(Op("UpdateItem", {"TableName": "t"}))
    assert caught.value.refused and not isinstance(caught.value, StoreUnavailable)
    assert caught.value.old == {"balance": pytest.approx(-0.5), "month": "2026-12"}
    assert str(caught.value.old["balance"]) == "-0.5"  # a Decimal, never a float
    assert len(dynamo.requests) == 1


def test_a_cancelled_transaction_shows_its_first_item_as_it_was(dynamo: FakeDynamo) -> None:
    cancelled = {
        "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
        "CancellationReasons": [{"Code": "ConditionalCheckFailed", "Item": {"win": {"N": "7"}}}, {"Code": "None"}],
    }
    dynamo.script.append((400, cancelled))
    with pytest.raises(StoreError) as caught:
        send(Op("TransactWriteItems", {"TransactItems": []}))
    assert caught.value.refused and caught.value.old == {"win": 7}


def test_a_transport_failure_is_an_unavailable_store(dynamo: FakeDynamo, monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.storage import client as module

    with applied({"AWS_ENDPOINT_URL_DYNAMODB": "http://127.0.0.1:9"}):  # nothing listens on the discard port
        monkeypatch.setattr(module, "CONNECT_TIMEOUT", 0.5)
        with pytest.raises(StoreUnavailable):
            send(GET)


def test_under_snapstart_credentials_come_from_the_container_endpoint_and_are_renewed(
    dynamo: FakeDynamo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SnapStart gives no key in the environment: the container credentials provider, as botocore's."""
    under_snapstart(monkeypatch, dynamo.url, "container-token")

    async def three_calls() -> None:
        for _ in range(3):
            await lean.client().send(GET)

    dynamo.expires_in = 3600  # fresh for an hour: read once
    asyncio.run(three_calls())
    assert dynamo.credentials_served == 1
    assert dynamo.requests[-1]["headers"]["authorization"].startswith("AWS4-HMAC-SHA256 Credential=ASIA1/")
    dynamo.expires_in = 300  # inside the ten minutes before expiry: read again before each use
    asyncio.run(three_calls())
    assert dynamo.credentials_served == 4
    assert dynamo.requests[-1]["headers"]["authorization"].startswith("AWS4-HMAC-SHA256 Credential=ASIA4/")


# --- the connections under it (storage/connections.py) -------------------------------------------


def raw_server(answers: list[bytes]) -> tuple[str, list[int], Any]:
    """An HTTP server on 127.0.0.1 that answers each request with the next of `answers` (raw bytes; b"" hangs
    up without answering); the connections it accepted are counted."""
    import socket
    import threading

    sock = socket.create_server(("127.0.0.1", 0))
    accepted: list[int] = []

    def serve() -> None:
        while answers:
            conn, _ = sock.accept()
            accepted.append(1)
            with conn:
                while answers:
                    data = b""
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                    if not data:
                        break
                    answer = answers.pop(0)
                    if not answer:
                        break  # hang up without an answer
                    conn.sendall(answer)
                    if b"connection: close" in answer.lower():
                        break

    threading.Thread(target=serve, daemon=True).start()
    return f"http://127.0.0.1:{sock.getsockname()[1]}", accepted, sock


def test_connections_are_kept_alive_and_chunked_answers_read() -> None:
    from gateway.storage.connections import HTTPError, Pool

    whole = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"
    chunked = b'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\n{"a":\r\n2\r\n1}\r\n0\r\n\r\n'
    closing = b"HTTP/1.1 500 Oops\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}"
    url, accepted, sock = raw_server([whole, chunked, closing, whole, b""])

    async def exchange() -> list[Any]:
        pool = Pool(url, 1, 2)
        answers = [await pool.post({"x-amz-target": "t"}, b"{}") for _ in range(4)]
        try:
            await pool.post({"x-amz-target": "t"}, b"{}")
        except HTTPError as exc:
            answers.append(exc)
        return answers

    try:
        answers = asyncio.run(exchange())
    finally:
        sock.close()
    assert [a.body for a in answers[:4]] == [b"{}", b'{"a":1}', b"{}", b"{}"]
    assert answers[2].status == 500 and isinstance(answers[4], HTTPError)  # a hang-up is no answer
    assert len(accepted) == 2  # one connection until the server closed it, then one more


def test_a_trailer_is_read_and_a_checksum_that_does_not_match_is_no_answer() -> None:
    import zlib

    from gateway.storage.connections import HTTPError, Pool

    trailer = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\nx-note: 1\r\n\r\n"
    good = f"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-amz-crc32: {zlib.crc32(b'{}')}\r\n\r\n{{}}".encode()
    bad = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-amz-crc32: 12345\r\n\r\n{}"
    url, accepted, sock = raw_server([trailer, good, bad])

    async def exchange() -> list[Any]:
        pool = Pool(url, 1, 2)
        found: list[Any] = [(await pool.post({}, b"{}")).body, (await pool.post({}, b"{}")).body]
        try:
            await pool.post({}, b"{}")
        except HTTPError as exc:
            found.append(exc)
        return found

    try:
        first, second, third = asyncio.run(exchange())
    finally:
        sock.close()
    assert first == b"{}" and second == b"{}" and isinstance(third, HTTPError)
    assert len(accepted) == 1  # the trailer was read whole: the connection served the next answers


def test_credentials_that_cannot_be_had_are_an_unavailable_store(
    dynamo: FakeDynamo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 503 the SDKs retry, not a 500: under SnapStart the container endpoint may refuse or be away for a moment."""
    under_snapstart(monkeypatch, dynamo.url, "not-the-token")
    with pytest.raises(StoreUnavailable) as caught:
        send(GET)
    assert caught.value.code == "NoCredentials" and dynamo.requests == []
