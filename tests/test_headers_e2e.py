"""Response headers every client relies on: `x-request-id` on every response, errors included, and
`x-should-retry: false` on exactly the 4xx errors the SDKs must not retry (all but 408/409/429)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from fake_upstream import ServerThread
from openapi import validate_error

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
    from starlette.routing import Route

    from gateway.api.app import create_app

    async def boom(request: Any) -> Any:
        raise RuntimeError("a bug somewhere")

    server = ServerThread(create_app([Route("/v1/boom", boom, methods=["GET"])]), name="gateway-boom").start()
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
