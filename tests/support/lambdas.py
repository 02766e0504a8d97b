"""The harness of events/, for the three ways the tests run the functions (tests/lambda: test_handlers in
this process, test_build from the build, test_invoke through the Runtime Interface Emulator): loading an
event (its placeholder key replaced, or the sweeper's schedule), the function each targets, the fake AWS
settings and tables, and what every answer must be (check_api_response, check_handler_answer)."""

from __future__ import annotations

import base64
import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.accounts import keys
from gateway.caches import reset_caches
from gateway.storage import dynamo, tables
from lambdas import builds as lambda_build
from lambdas.invoke import KEY_PLACEHOLDER, SCHEDULED_EVENT, web_adapter_request
from tests.support.kit import sse_data

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
TEMPLATE = ROOT / "template.yaml"
TABLES = {"KeysTable": "handler-test-keys", "UsageTable": "handler-test-usage"}
REGION = "us-east-1"
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "KEYS_TABLE": TABLES["KeysTable"],
    "USAGE_TABLE": TABLES["UsageTable"],
}
# Settings that must not leak in from the developer's shell.
NOT_INHERITED = (
    "PROVIDER_SECRET_ID",
    "PROVIDER_KEY_NAMES_PARAMETER",
    "AWS_PROFILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_ENDPOINT_URL_SECRETS_MANAGER",
    "KEY_CACHE_SECONDS",
    "GATEWAY_CATALOG",
    "GATEWAY_CATALOG_EXTRA",
)


# What each committed event must answer. An event added later without an entry here must answer
# 2xx, or 4xx when its name says it is an error case.
EXPECTED_STATUS = {
    "models-list": 200,
    "models-retrieve": 200,
    "models-retrieve-unknown": 404,
    "key-info": 200,
    "key-info-missing-auth": 401,
    "chat-completion": 200,
    "chat-completion-stream": 200,
    "chat-invalid-json": 400,
}
ERROR_WORDS = ("missing", "unknown", "invalid", "revoked", "unauthorized", "forbidden", "too-large", "error")


def events() -> dict[str, dict[str, Any]]:
    return {path.stem: json.loads(path.read_text()) for path in sorted(EVENTS.glob("*.json"))}


def event_text(name: str) -> str:
    """events/NAME.json as committed (placeholder key included); `scheduled`: the sweeper's schedule event."""
    return json.dumps(SCHEDULED_EVENT) if name == "scheduled" else (EVENTS / f"{name}.json").read_text()


def event(name: str, key: str | None = None) -> dict[str, Any]:
    """The event `name` (or `scheduled`), with `key` in place of the placeholder key where one is given."""
    if name == "scheduled":
        return copy.deepcopy(SCHEDULED_EVENT)
    text = event_text(name)
    return json.loads(text.replace(KEY_PLACEHOLDER, key) if key else text)


def targets() -> list[tuple[str, str]]:
    """(function, event name) for every event and the function whose Api event it matches, by the template."""
    functions = lambda_build.built_functions(ROOT)  # the source template: CodeUri relative to the repository
    pairs = [(fn.name, name) for name, event in events().items() for fn in functions.values() if fn.targets(event)]
    pairs += [(fn.name, "scheduled") for fn in functions.values() if fn.schedules]
    return pairs


def expected(name: str, status: int) -> bool:
    if name in EXPECTED_STATUS:
        return status == EXPECTED_STATUS[name]
    if any(word in name for word in ERROR_WORDS):
        return 400 <= status < 500
    return 200 <= status < 400


def check_api_response(
    name: str, event: dict[str, Any], status: int, headers: dict[str, str], text: str, logs: str = ""
) -> None:
    """What every API Gateway proxy response of the gateway must be, and the status this event expects."""
    assert expected(name, status), f"{name}: {status} {text[:2000]}\n{logs}"
    assert headers.get("x-request-id") == event["requestContext"]["requestId"], (name, headers)
    if 300 <= status < 400:
        assert headers.get("location"), f"{name}: a redirect without Location"
        return
    content_type = headers.get("content-type", "")
    if content_type.startswith("text/event-stream"):
        data = sse_data(text)
        chunks = [json.loads(d) for d in data if d != "[DONE]"]
        assert chunks and not any("error" in c for c in chunks), f"{name}: {text[-2000:]}\n{logs}"
        if event["path"] == "/v1/chat/completions":
            assert data[-1] == "[DONE]", f"{name}: {text[-1000:]}"
            assert all(c.get("object") == "chat.completion.chunk" for c in chunks), name
            assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0, name
        return
    if content_type.startswith("application/json"):
        body = json.loads(text)
        if status >= 400:
            assert set(body["error"]) == {"message", "type", "param", "code"}, f"{name}: {body}"
            assert body["error"]["message"], name
    else:
        assert status < 400 and text, f"{name}: {status} {content_type} {text[:500]}"


def check_handler_answer(name: str, event: dict[str, Any], result: Any, key: str, logs: str = "") -> None:
    """What a Python handler (Mangum's, the sweeper's or the tally's) returned for `event`, as check_api_response
    wants it; the sweeper's schedule finds nothing stale in fresh tables, the tally counts a new batch in one
    transaction, and key-info never sends the key back."""
    if "Records" in event:
        assert result == {"transactions": 1}, result
        return
    if "httpMethod" not in event:
        assert isinstance(result, dict) and result.get("released") == 0, result
        return
    status, headers, text = mangum_response(result)
    check_api_response(name, event, status, headers, text, logs)
    if status == 200 and name.startswith("key-info"):
        assert key not in text, "the key itself is never sent back"


def mangum_response(result: dict[str, Any]) -> tuple[int, dict[str, str], str]:
    headers = {k.lower(): v for k, v in (result.get("headers") or {}).items()}
    for key, values in (result.get("multiValueHeaders") or {}).items():
        headers.setdefault(key.lower(), ", ".join(values))
    body = result.get("body") or ""
    if result.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    return result["statusCode"], headers, body


@dataclass
class ChatServer:
    url: str
    key: str
    log: Path

    def logs(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def send(self, event: dict[str, Any]) -> httpx.Response:
        """What the Web Adapter sends uvicorn for this event (lambdas/invoke.py, web_adapter_request)."""
        method, path, headers, content = web_adapter_request(event)
        with httpx.Client(base_url=self.url, timeout=20, trust_env=False) as client:
            return client.request(method, path, headers=headers, content=content)


def create_key_on(endpoint: str) -> str:
    """The template's tables and an API key on moto's server, with this process's settings restored after."""
    with pytest.MonkeyPatch.context() as mp:
        for name in NOT_INHERITED:
            mp.delenv(name, raising=False)
        for name, value in {**FAKE_AWS, "AWS_ENDPOINT_URL_DYNAMODB": endpoint}.items():
            mp.setenv(name, value)
        reset_caches()
        try:
            tables.create_all(dynamo.client(), TEMPLATE, TABLES)
            return keys.create(owner="ops@example.com", name="chat handler tests")[0]
        finally:
            reset_caches()
