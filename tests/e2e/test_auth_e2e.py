"""API-key authentication end to end: missing, malformed, unknown, revoked and expired keys are 401s
in OpenAI's shape, through raw HTTP and the SDK."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import openai
import pytest

from tests.support.fake_upstream import FakeUpstream
from tests.support.openapi import validate_error

BODY = {"model": "fake-ok", "messages": [{"role": "user", "content": "hi"}]}


def post(anon: httpx.Client, headers: dict[str, str]) -> httpx.Response:
    return anon.post("/chat/completions", json=BODY, headers=headers)


def assert_401(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 401, response.text
    body = response.json()
    validate_error(body, status=401)
    assert body["error"]["type"] == "authentication_error"
    assert body["error"]["code"] == "invalid_api_key"
    assert response.headers["x-should-retry"] == "false"
    assert response.headers["x-request-id"]
    return body["error"]


UNKNOWN_KEY = "sk-" + "A" * 43


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": ""},
        {"authorization": "Bearer"},
        {"authorization": "Bearer not-a-key"},
        {"authorization": "Bearer sk-short"},
        {"authorization": f"Basic {UNKNOWN_KEY}"},
        {"authorization": UNKNOWN_KEY},
        {"authorization": f"Bearer {UNKNOWN_KEY}"},
        {"x-api-key": UNKNOWN_KEY},
    ],
    ids=["none", "empty", "bearer only", "not sk-", "too short", "basic", "no scheme", "unknown", "x-api-key"],
)
def test_a_bad_key_is_a_401(anon_http: httpx.Client, fake: FakeUpstream, headers: dict[str, str]) -> None:
    before = len(fake.records)
    assert_401(post(anon_http, headers))
    assert len(fake.records) == before


def test_an_unknown_key_is_not_echoed_in_full(anon_http: httpx.Client) -> None:
    error = assert_401(post(anon_http, {"authorization": f"Bearer {UNKNOWN_KEY}"}))
    assert UNKNOWN_KEY not in error["message"]


def test_a_valid_key_works_and_the_scheme_is_case_insensitive(
    anon_http: httpx.Client, make_key: Callable[..., tuple[str, Any]]
) -> None:
    key, _ = make_key(name="auth ok")
    for scheme in ("Bearer", "bearer", "BEARER"):
        response = post(anon_http, {"authorization": f"{scheme} {key}"})
        assert response.status_code == 200, response.text


def test_a_revoked_key_stops_working(
    anon_http: httpx.Client, make_key: Callable[..., tuple[str, Any]], client_for: Callable[[str], openai.OpenAI]
) -> None:
    from gateway.accounts import keys

    key, record = make_key(name="to revoke")
    assert post(anon_http, {"authorization": f"Bearer {key}"}).status_code == 200
    keys.set_status(record.key_id, "revoked")
    error = assert_401(post(anon_http, {"authorization": f"Bearer {key}"}))
    assert "revoked" in error["message"]

    client = client_for(key)
    with pytest.raises(openai.AuthenticationError) as raised:
        client.chat.completions.create(model="gateway-echo", messages=[{"role": "user", "content": "hi"}])
    assert raised.value.status_code == 401
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="gateway-echo", messages=[{"role": "user", "content": "hi"}], stream=True)


def test_an_expired_key_is_a_401(anon_http: httpx.Client, make_key: Callable[..., tuple[str, Any]]) -> None:
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat(timespec="seconds")
    key, _ = make_key(name="expired", expires_at=past)
    error = assert_401(post(anon_http, {"authorization": f"Bearer {key}"}))
    assert "expired" in error["message"]

    future = (datetime.now(UTC) + timedelta(days=1)).isoformat(timespec="seconds")
    key, _ = make_key(name="not yet expired", expires_at=future)
    assert post(anon_http, {"authorization": f"Bearer {key}"}).status_code == 200


def test_auth_comes_before_validation(anon_http: httpx.Client) -> None:
    """An invalid body with no key is a 401, so the API does not describe itself to strangers."""
    response = anon_http.post("/chat/completions", content=b"{not json")
    assert_401(response)


def test_key_info_describes_the_key(anon_http: httpx.Client, make_key: Callable[..., tuple[str, Any]]) -> None:
    key, record = make_key(owner="ada@example.com", name="key info")
    response = anon_http.get("/key", headers={"authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["key_id"] == record.key_id
    assert data["owner"] == "ada@example.com" and data["name"] == "key info"
    assert key not in response.text, "the key itself must never be returned"
    assert_401(anon_http.get("/key"))
