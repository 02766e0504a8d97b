"""`gateway-admin` round trips: the real command in a subprocess, against the same DynamoDB the
gateway serves from, with each change checked through the gateway itself; and its provider-key
commands against a deployed stack's secret and parameter, under moto's mock_aws."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from decimal import Decimal
from typing import Any

import boto3
import httpx
import pytest

from tests.support.admin import REGION, run_admin, stored
from tests.support.kit import tallied
from tests.support.money import usd
from tests.support.stack import Stack


def admin(stack: Stack, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **stack.env}
    endpoint = stack.env["AWS_ENDPOINT_URL_DYNAMODB"]
    command = [sys.executable, "-m", "gateway.admin.cli", "--endpoint-url", endpoint, *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    if ok:
        assert done.returncode == 0, done.stderr
    return done


def admin_json(stack: Stack, *args: str) -> Any:
    return json.loads(admin(stack, "--json", *args).stdout)


def chat(stack: Stack, key: str) -> httpx.Response:
    body = {"model": "gateway-echo", "messages": [{"role": "user", "content": "hello admin"}]}
    return httpx.post(
        f"{stack.base_url}/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {key}"},
        timeout=15,
        trust_env=False,
    )


@pytest.fixture
def stack(e2e: Stack) -> Stack:
    return e2e


def test_a_key_s_whole_life_through_the_admin_command(stack: Stack) -> None:
    created = admin_json(stack, "create-key", "--owner", "ada@example.com", "--name", "laptop", "--plan", "developer")
    key, key_id = created["key"], created["key_id"]
    assert key.startswith("sk-") and created["plan"] == "developer"

    assert chat(stack, key).status_code == 200
    tallied()  # the usage counters, as TallyFunction adds them up from the table's stream
    shown = admin_json(stack, "show-key", key_id)
    assert (shown["plan"], shown["status"], shown["balance"]) == ("developer", "active", "5")
    assert shown["month_requests"] == 1

    topped = admin_json(stack, "top-up", key_id, "2.50")
    assert usd(topped["balance"]) == Decimal("7.5") and usd(topped["purchased"]) == Decimal("2.5")
    assert topped["debt"] == "0"

    usage = admin_json(stack, "usage", key_id)
    assert usage["requests"] == 1 and usage["errors"] == 0 and usage["total_tokens"] > 0
    day = admin_json(stack, "usage", key_id, "--day", time.strftime("%Y-%m-%d", time.gmtime()))
    assert day["requests"] == 1

    assert admin_json(stack, "set-plan", key_id, "startup")["plan"] == "startup"
    listed = {row["key_id"]: row for row in admin_json(stack, "list-keys")}
    assert listed[key_id]["plan"] == "startup" and listed[key_id]["prefix"] == key[:7] + "..." + key[-4:]

    admin_json(stack, "revoke", key_id)
    refused = chat(stack, key)
    assert refused.status_code == 401 and "revoked" in refused.json()["error"]["message"]


def test_keys_are_issued_with_their_limits_and_expiry(stack: Stack) -> None:
    created = admin_json(
        stack, "create-key", "--owner", "bob@example.com", "--models", "gateway-echo", "--rpm", "3", "--expires", "2d"
    )
    key = created["key"]
    assert created["expires_at"] > time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    answer = chat(stack, key)
    assert answer.headers["x-ratelimit-limit-requests"] == "3"
    other = httpx.post(
        f"{stack.base_url}/chat/completions",
        json={"model": "fake-ok", "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": f"Bearer {key}"},
        timeout=15,
        trust_env=False,
    )
    assert other.status_code == 403 and other.json()["error"]["code"] == "model_not_allowed"


def test_the_admin_command_prints_tables_for_people(stack: Stack) -> None:
    admin(stack, "create-key", "--owner", "carol@example.com", "--name", "table")
    text = admin(stack, "list-keys").stdout
    assert text.splitlines()[0].split()[:3] == ["KEY_ID", "PREFIX", "NAME"]
    assert "carol@example.com" in text
    plans = admin(stack, "plans").stdout
    assert "developer" in plans and "startup" in plans


def test_mistakes_are_reported_not_crashed_on(stack: Stack) -> None:
    unknown = admin(stack, "show-key", "key_does_not_exist", ok=False)
    assert unknown.returncode != 0 and "no key with id" in unknown.stderr
    bad_plan = admin(stack, "create-key", "--owner", "x", "--plan", "platinum", ok=False)
    assert bad_plan.returncode == 2 and "unknown plan" in bad_plan.stderr
    bad_amount = admin(stack, "top-up", "key_x", "-5", ok=False)
    assert bad_amount.returncode == 2 and "positive" in bad_amount.stderr


# --- Provider keys: into a deployed stack's secret, and their names into its parameter ----------


def test_set_provider_key_writes_the_secret_and_the_list_of_its_names(deployed: dict[str, str]) -> None:
    stack = deployed["stack"]
    code, out, _ = run_admin("--stack", stack, "--json", "set-provider-key", "openai", "sk-openai-secret")
    assert code == 0 and json.loads(out) == {"set": "OPENAI_API_KEY", "keys": ["OPENAI_API_KEY"]}
    assert "sk-openai-secret" not in out  # a key is never printed

    # By the key's own name, and with the key on stdin rather than in the shell's history.
    code, out, _ = run_admin("--stack", stack, "set-provider-key", "GROQ_API_KEY", stdin="gsk-groq-secret\n")
    assert code == 0 and "GROQ_API_KEY" in out and "gsk-groq-secret" not in out
    assert stored(deployed) == (
        {"OPENAI_API_KEY": "sk-openai-secret", "GROQ_API_KEY": "gsk-groq-secret"},
        ["GROQ_API_KEY", "OPENAI_API_KEY"],
    )

    # Replacing a key keeps the list; removing one takes it off both.
    assert run_admin("--stack", stack, "set-provider-key", "openai", "sk-rotated")[0] == 0
    code, out, _ = run_admin("--stack", stack, "--json", "remove-provider-key", "groq")
    assert code == 0 and json.loads(out) == {"removed": "GROQ_API_KEY", "keys": ["OPENAI_API_KEY"]}
    assert stored(deployed) == ({"OPENAI_API_KEY": "sk-rotated"}, ["OPENAI_API_KEY"])


def test_set_provider_key_repairs_a_list_left_stale_by_an_edit_of_the_secret(deployed: dict[str, str]) -> None:
    secrets = boto3.client("secretsmanager", region_name=REGION)
    secrets.put_secret_value(SecretId=deployed["secret"], SecretString=json.dumps({"MISTRAL_API_KEY": "m-1"}))
    assert run_admin("--stack", deployed["stack"], "set-provider-key", "gemini", "g-1")[0] == 0
    assert stored(deployed)[1] == ["GEMINI_API_KEY", "MISTRAL_API_KEY"]


def test_provider_key_mistakes_are_reported(deployed: dict[str, str]) -> None:
    stack = deployed["stack"]
    code, _, err = run_admin("--stack", stack, "set-provider-key", "bedrock", "x")
    assert code == 2 and "takes no key" in err  # Bedrock is called with the function's IAM role
    code, _, err = run_admin("--stack", stack, "set-provider-key", "openai", stdin="\n")
    assert code == 2 and "empty" in err
    code, _, err = run_admin("--stack", stack, "set-provider-key", "not a name", "x")
    assert code == 2 and "not a provider id" in err
    code, _, err = run_admin("--local", "set-provider-key", "openai", "x")  # locally keys are environment variables
    assert code != 0 and "environment variables" in err
    assert stored(deployed) == ({}, [])
