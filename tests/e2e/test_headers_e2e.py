"""Response headers every client relies on: `x-request-id` on every response, errors included, and
`x-should-retry: false` on exactly the 4xx errors the SDKs must not retry (all but 408/409/429)."""

from __future__ import annotations

import json
import os
import re
import uuid
from typing import Any

import httpx
import pytest

from tests.support.openapi import validate_error, validate_unified_error
from tests.support.servers import ServerThread, free_port
from tests.support.stack import Stack

OK = {"model": "gateway-echo", "messages": [{"role": "user", "content": "hi"}]}

# (label, method, path, json body or raw bytes, send the key?, expected status)
CASES: list[tuple[str, str, str, Any, bool, int]] = [
    ("chat", "POST", "/chat/completions", OK, True, 200),
    ("stream", "POST", "/chat/completions", {**OK, "stream": True}, True, 200),
    ("models", "GET", "/models", None, True, 200),
    ("model", "GET", "/models/gateway-echo", None, True, 200),
    ("bad json", "POST", "/chat/completions", b"{", True, 400),
    ("bad param", "POST", "/chat/completions", {**OK, "top_p": 2}, True, 400),
    ("no key", "POST", "/chat/completions", OK, False, 401),
    ("unknown model", "POST", "/chat/completions", {**OK, "model": "nope"}, True, 404),
    ("unknown model object", "GET", "/models/nope", None, True, 404),
    ("unknown route", "GET", "/nope", None, True, 404),
    ("wrong method", "GET", "/chat/completions", None, True, 405),
    ("upstream 500", "POST", "/chat/completions", {**OK, "model": "fake-error-500"}, True, 502),
    ("upstream 400", "POST", "/chat/completions", {**OK, "model": "fake-error-400"}, True, 400),
    ("no provider", "POST", "/chat/completions", {**OK, "model": "fake-offline"}, True, 503),
    ("upstream hangs", "POST", "/chat/completions", {**OK, "model": "fake-hang"}, True, 504),
]


def send(http: httpx.Client, method: str, path: str, body: Any, with_key: bool) -> httpx.Response:
    headers = {} if with_key else {"authorization": ""}
    if isinstance(body, bytes):
        return http.request(method, path, content=body, headers={**headers, "content-type": "application/json"})
    return http.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize(("label", "method", "path", "body", "with_key", "status"), CASES, ids=[c[0] for c in CASES])
def test_headers_of_every_kind_of_response(
    http: httpx.Client, label: str, method: str, path: str, body: Any, with_key: bool, status: int
) -> None:
    response = send(http, method, path, body, with_key)
    assert response.status_code == status, response.text
    assert response.headers.get("x-request-id"), f"{label}: no x-request-id"
    should_retry = response.headers.get("x-should-retry")
    if 400 <= status < 500 and status not in (408, 409, 429):
        assert should_retry == "false", f"{label}: a {status} must carry x-should-retry: false"
    else:
        assert should_retry != "false", f"{label}: a {status} must stay retryable"


def test_request_ids_are_unique(http: httpx.Client) -> None:
    ids = {http.get("/models/gateway-echo").headers["x-request-id"] for _ in range(5)}
    assert len(ids) == 5


def test_api_gateway_s_request_id_is_reused(http: httpx.Client) -> None:
    """Behind API Gateway (the Web Adapter passes its context as a header) logs and clients share one id."""
    request_id = f"apigw-{uuid.uuid4()}"
    context = json.dumps({"requestId": request_id, "stage": "api"})
    response = http.post("/chat/completions", json=OK, headers={"x-amzn-request-context": context})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == request_id


def test_an_internal_error_is_openai_shaped_with_a_request_id() -> None:
    """An unexpected exception anywhere behind a route still answers OpenAI's error body and x-request-id."""
    from fastapi import APIRouter

    from gateway.api.app import create_app

    router = APIRouter()

    @router.get("/v1/boom")
    async def boom() -> Any:
        raise RuntimeError("a bug somewhere")

    server = ServerThread(create_app(router), name="gateway-boom").start()
    try:
        response = httpx.get(f"{server.url}/v1/boom", trust_env=False, timeout=10)
    finally:
        server.stop()
    assert response.status_code == 500
    body = response.json()
    validate_error(body, status=500)
    assert body["error"]["type"] == "server_error"
    assert "a bug somewhere" not in response.text, "internal details leaked"
    assert response.headers.get("x-request-id"), "no x-request-id on a 500"


# --- a caller-supplied request id is bounded -----------------------------------------------------

CLEAN_ID = re.compile(r"^[\x20-\x7e]{1,128}$")


@pytest.mark.parametrize(
    ("request_id", "kept"),
    [
        ("abc\r\nSet-Cookie: x=1", "abcSet-Cookie: x=1"),
        ("a" * 10_240, None),
        ("réquest-ïd-☃", "rquest-d-"),
        ("☃☃☃", None),
        ("\x00\x01\x7f", None),
        (12345, None),
        ("   ", None),
        ("x" * 128, "x" * 128),
        ("x" * 129, None),
    ],
    ids=["crlf", "10 KB", "non-ascii", "only non-ascii", "only control", "a number", "blank", "128", "129"],
)
def test_a_request_id_from_the_caller_is_bounded(http: httpx.Client, request_id: Any, kept: str | None) -> None:
    """Control characters and non-ASCII are dropped; what is left is used if 1..128 long, else one is made."""
    context = json.dumps({"requestId": request_id, "stage": "api"})
    for method, path, body in (("POST", "/chat/completions", OK), ("GET", "/models/gateway-echo", None)):
        response = http.request(method, path, json=body, headers={"x-amzn-request-context": context})
        assert response.status_code == 200, response.text
        rid = response.headers["x-request-id"]
        assert CLEAN_ID.match(rid), rid
        assert rid == kept if kept is not None else re.fullmatch(r"req_[0-9a-f]{32}", rid), rid


def test_a_malformed_request_context_is_ignored(http: httpx.Client) -> None:
    for context in ("{not json", "[1, 2]", '{"requestId": {"a": 1}}', "null"):
        response = http.get("/models/gateway-echo", headers={"x-amzn-request-context": context})
        assert response.status_code == 200
        assert re.fullmatch(r"req_[0-9a-f]{32}", response.headers["x-request-id"])


# --- a failing account store is a retryable 503 on every route -----------------------------------

KEYED_ROUTES = [
    ("POST", "/v1/chat/completions", OK),
    ("POST", "/api/chat", {"messages": OK["messages"]}),
    ("GET", "/v1/key", None),
    ("GET", "/v1/credits", None),
    ("GET", "/v1/stats", None),
    ("GET", "/v1/generation?id=x", None),
]


def test_an_unreachable_account_store_is_a_retryable_503_on_every_route(caplog: pytest.LogCaptureFixture) -> None:
    """DynamoDB on a closed port: every keyed route answers 503 storage_unavailable with Retry-After."""
    import asyncio
    import logging

    from tests.support.stack import applied

    closed = free_port()  # nothing listens there
    env = {
        "AWS_ENDPOINT_URL_DYNAMODB": f"http://127.0.0.1:{closed}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "KEY_CACHE_SECONDS": "0",
    }
    key = "sk-" + "a" * 48  # well-formed, so the store is asked about it

    async def call_all() -> list[httpx.Response]:
        from gateway.local.app import local_app

        transport = httpx.ASGITransport(app=local_app())
        headers = {"authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway", headers=headers) as client:
            calls = [client.request(method, path, json=body) for method, path, body in KEYED_ROUTES]
            return await asyncio.gather(*calls)

    with applied(env), caplog.at_level(logging.INFO):
        responses = asyncio.run(call_all())
    for (_, path, _), response in zip(KEYED_ROUTES, responses, strict=True):
        assert response.status_code == 503, (path, response.text)
        body = response.json()
        if path.startswith("/api/"):  # the unified API answers in its own shape
            validate_unified_error(body, 503)
            assert body["retry_after"] == 1, path
        else:
            validate_error(body, status=503)
            assert body["error"]["type"] == "server_error" and body["error"]["code"] == "storage_unavailable", path
        assert response.headers["retry-after"] == "1" and response.headers["x-request-id"], path
        assert "x-should-retry" not in response.headers  # the SDKs retry a 503 by themselves
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "store" in r.getMessage()]
    assert len(warnings) >= len(KEYED_ROUTES)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert key not in caplog.text and key[3:20] not in caplog.text


# --- credentials in upstream error text never reach the client -----------------------------------


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Incorrect API key provided: sk-live-1234567890abcdefghij.", "sk-live-1234567890abcdefghij"),
        ("Incorrect API key provided: sk-proj-********************abcd.", "abcd"),
        ("invalid x-api-key: sk-ant-api03-AbCdEf_123456-xyz", "AbCdEf_123456"),
        ("Authorization: Bearer eyJhbGciOi.payload.sig was refused", "eyJhbGciOi"),
        ("The security token included in the request is invalid: AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"),
        ("API key not valid: AIzaSyA-1234567890abcdefghijklmnopqrstu", "AIzaSyA-1234567890"),
        ("bad request: api_key=hunter2 was rejected", "hunter2"),
        ('{"api-key": "s3cr3t-value"}', "s3cr3t-value"),
        ("secret_access_key: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI"),
        ("session token 0123456789abcdef0123456789abcdef expired", "0123456789abcdef0123456789abcdef"),
    ],
)
def test_scrub_redacts_credentials(text: str, secret: str) -> None:
    from gateway.errors import scrub

    scrubbed = scrub(text)
    assert secret not in scrubbed and "[redacted]" in scrubbed, scrubbed


@pytest.mark.parametrize(
    "text",
    [
        "fake upstream says: 'tools[0].function.name' is invalid",
        "max_tokens is too large: 100000. This model supports at most 4096 completion tokens.",
        "The model `gpt-4o` does not exist or you do not have access to it.",
        "Rate limit reached for requests per minute: limit 500, used 500.",
        "task-based tokens: 12",
    ],
)
def test_scrub_keeps_ordinary_error_text(text: str) -> None:
    from gateway.errors import scrub

    assert scrub(text) == text


def test_an_upstream_error_quoting_credentials_reaches_the_client_scrubbed(
    e2e: Stack, http: httpx.Client, tmp_path: Any
) -> None:
    """The fake upstream's `error-leak` quotes a key, a bearer token and an AWS key id in its 400."""
    from tests.support.fake_upstream import LEAKED_SECRETS
    from tests.support.stack import applied

    extra = {
        "providers": {
            "fake-leak": {"name": "Fake upstream (leak)", "base_url_env": "FAKE_BASE_URL", "key_required": False}
        },
        "models": [
            {
                "id": "fake-leak",
                "owned_by": "fake-lab",
                "created": 1767225600,
                "pricing": {"input": "1", "output": "2"},
                "offerings": [{"provider": "fake-leak", "model": "error-leak"}],
            }
        ],
    }
    path = tmp_path / "leak.json"
    path.write_text(json.dumps(extra))
    catalogs = f"{e2e.env['GATEWAY_CATALOG_EXTRA']}{os.pathsep}{path}"
    with applied({"GATEWAY_CATALOG_EXTRA": catalogs}):
        answers = [
            http.post("/chat/completions", json={**OK, "model": "fake-leak", "stream": s}) for s in (False, True)
        ]
    for response in answers:
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "upstream_rejected_request"
        assert "[redacted]" in response.text and "'messages[0].content' is invalid" in response.text
        for secret in LEAKED_SECRETS:
            assert secret not in response.text
