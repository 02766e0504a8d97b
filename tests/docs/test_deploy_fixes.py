"""A first deploy that works, or says plainly why not (issue 20): the template's region rule, the idle limits,
the adapter's readiness check, line endings, and a smoke test against the local server as after a deploy."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lambdas.builds import load_template
from tests.support.processes import stop
from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = load_template(ROOT / "template.yaml")
GUIDE = (ROOT / "docs" / "deploy.md").read_text()


def test_a_deploy_to_a_region_without_every_part_stops_before_it_creates_anything() -> None:
    (assertion,) = TEMPLATE["Rules"]["SupportedRegion"]["Assertions"]
    regions, region = assertion["Assert"]["Fn::Contains"]
    assert region == {"Ref": "AWS::Region"}
    assert {"us-east-1", "eu-west-1", "ap-northeast-1"} <= set(regions)
    # No Web Adapter layer in me-south-1; no SnapStart for Python in New Zealand or Taipei.
    assert not {"me-south-1", "ap-southeast-6", "ap-east-2"} & set(regions)
    assert all(region in GUIDE for region in regions), "docs/deploy.md lists the regions"


def test_nothing_waits_past_the_streamed_integrations_idle_limit() -> None:
    timeout = TEMPLATE["Parameters"]["UpstreamTimeoutSeconds"]
    assert timeout["MaxValue"] <= 290 < 300  # a whole answer sends nothing until it is ready: under 5 minutes
    assert "keep-alive" in GUIDE and "STREAM_KEEPALIVE_SECONDS" in GUIDE


def test_a_restored_copy_that_does_not_answer_fails_fast() -> None:
    variables = TEMPLATE["Resources"]["ChatFunction"]["Properties"]["Environment"]["Variables"]
    assert int(variables["AWS_LWA_READINESS_CHECK_TIMEOUT_SECONDS"]) <= 10


def test_shell_scripts_keep_unix_line_endings_and_sam_leaves_the_region_alone() -> None:
    attributes = (ROOT / ".gitattributes").read_text()
    assert "*.sh text eol=lf" in attributes
    assert not re.search(r"export AWS_DEFAULT_REGION", (ROOT / "scripts" / "sam").read_text())
    assert "BuildMethod: makefile" in GUIDE


@pytest.fixture(scope="module")
def local_gateway() -> Iterator[tuple[str, str]]:
    """`make serve` as a user runs it: gateway-local, its moto child and the printed key."""
    port = free_port()
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "gateway-local"), "--port", str(port), "--dynamodb-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    key, deadline, seen = None, time.monotonic() + 60, []
    assert process.stdout is not None
    while key is None and time.monotonic() < deadline:
        line = process.stdout.readline()
        seen.append(line)
        found = re.search(r"\bsk-[A-Za-z0-9_-]{20,}", line)
        key = found.group(0) if found else None
        if process.poll() is not None:
            break
    try:
        assert key, "gateway-local printed no key:\n" + "".join(seen[-20:])
        yield f"http://127.0.0.1:{port}/v1", key
    finally:
        stop(process, timeout=10)


def test_the_smoke_test_passes_against_the_local_server(local_gateway: tuple[str, str]) -> None:
    base_url, key = local_gateway
    done = subprocess.run(
        [str(Path(sys.executable).parent / "gateway-admin"), "smoke", "--base-url", base_url, "--key", key],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == "7 passed, 0 failed"
    for check in (
        "GET /v1/models",
        "chat completion, streamed",
        "Responses",
        "Anthropic Messages",
        "a bad key is a 401",
    ):
        (row,) = [line for line in lines if line.startswith(check + " ")]
        assert " pass " in row


def test_the_smoke_test_fails_where_the_gateway_does(local_gateway: tuple[str, str]) -> None:
    """The check can fail: against a key that does not exist, every keyed call fails and it exits 1."""
    base_url, _ = local_gateway
    done = subprocess.run(
        [str(Path(sys.executable).parent / "gateway-admin"), "smoke", "--base-url", base_url, "--key", "sk-nope"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and "FAIL" in done.stdout


def test_a_silent_upstream_s_stream_gets_keep_alive_comments_every_client_skips(e2e: Any, make_key: Any) -> None:
    """Through the real server: a provider pausing between chunks (fake `drip`) longer than the keep-alive."""
    import httpx
    import openai

    from tests.support.stack import applied

    key, _ = make_key()
    with applied({"STREAM_KEEPALIVE_SECONDS": "0.03"}):
        body = {"model": "fake-drip", "messages": [{"role": "user", "content": "one two three"}], "stream": True}
        raw = httpx.post(
            f"{e2e.base_url}/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=30
        )
        assert raw.status_code == 200 and raw.text.count(": keep-alive\n\n") >= 2, raw.text[:500]
        assert raw.text.rstrip().endswith("data: [DONE]")
        client = openai.OpenAI(base_url=e2e.base_url, api_key=key, max_retries=0)
        stream = client.chat.completions.create(model="fake-drip", messages=body["messages"], stream=True)
        chunks = list(stream)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) and chunks[-1].usage
