"""The request path reaches DynamoDB through its lean client only: not one call through botocore.

botocore was half of the chat function's CPU per request (issue 23), so admission, settlement, the
key lookup and provider health go through gateway/storage/client.py. This test counts every call
botocore makes, in any thread of this process (the gateway runs in it), while requests of every
protocol and outcome go through the gateway: answered, streamed, counted, refused, failed over.
"""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from tests.support.keys import make_key
from tests.support.stack import Stack


def test_the_request_path_makes_no_botocore_call(e2e: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    import botocore.client

    key, _ = make_key(free_requests=0)
    broke, _ = make_key(free_requests=0, monthly_credit="0")
    limited, _ = make_key(free_requests=0, rpm=1)
    calls: list[tuple[str, str]] = []
    real = botocore.client.BaseClient._make_api_call

    def counted(self: Any, operation: str, params: dict[str, Any]) -> Any:
        calls.append((threading.current_thread().name, operation))
        return real(self, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", counted)
    user = [{"role": "user", "content": "no botocore"}]
    requests = [
        (key, "/chat/completions", {"model": "fake-ok", "messages": user}, 200),
        (key, "/chat/completions", {"model": "fake-ok", "messages": user, "stream": True}, 200),
        (key, "/chat/completions", {"model": "fake-fallback", "messages": user}, 200),  # a failure, then fake2
        (key, "/messages", {"model": "fake-ok", "max_tokens": 50, "messages": user}, 200),
        (key, "/messages", {"model": "fake-ok", "max_tokens": 50, "messages": user, "stream": True}, 200),
        (key, "/messages/count_tokens", {"model": "fake-ok", "messages": user}, 200),
        (key, "/responses", {"model": "fake-ok", "input": "no botocore"}, 200),
        (key, "/responses", {"model": "fake-ok", "input": "no botocore", "stream": True}, 200),
        (broke, "/chat/completions", {"model": "fake-ok", "messages": user}, 402),
        (limited, "/chat/completions", {"model": "fake-ok", "messages": user}, 200),
        (limited, "/chat/completions", {"model": "fake-ok", "messages": user}, 429),
        ("sk-" + "x" * 43, "/chat/completions", {"model": "fake-ok", "messages": user}, 401),
    ]
    with httpx.Client(base_url=e2e.base_url, timeout=30, trust_env=False) as http:
        for api_key, path, body, status in requests:
            answer = http.post(path, json=body, headers={"authorization": f"Bearer {api_key}"})
            assert answer.status_code == status, (path, body, answer.text)
            answer.read()
    assert calls == []
