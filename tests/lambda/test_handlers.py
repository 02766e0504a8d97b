"""The Lambda entry points in functions/, driven by the events/ files as API Gateway sends them.

ModelsFunction and StatsFunction are Mangum handlers: they are called with each event under
moto's mock_aws, on tables created from template.yaml. ChatFunction is uvicorn behind the
Lambda Web Adapter: its run.sh is started for real and the events are replayed the way the
adapter forwards them (the event's path, headers and body, and the request context in
`x-amzn-request-context`), against moto's DynamoDB server.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import boto3
import httpx
import pytest
from moto import mock_aws

from gateway.accounts import keys
from gateway.caches import reset_caches
from gateway.catalog import catalog
from gateway.config import settings
from gateway.local.child import stop
from gateway.providers import registry
from gateway.storage import tables
from lambdas.invoke import KEY_PLACEHOLDER
from tests.support.kit import sse_data, sse_names
from tests.support.lambdas import (
    FAKE_AWS,
    NOT_INHERITED,
    REGION,
    ROOT,
    TABLES,
    TEMPLATE,
    ChatServer,
    check_api_response,
    create_key_on,
    mangum_response,
)
from tests.support.lambdas import event as load_event
from tests.support.moto import moto_server
from tests.support.routes import served as routes_of
from tests.support.servers import free_port


def load_function(name: str, filename: str = "app.py") -> ModuleType:
    """functions/NAME/FILENAME as a module (functions/ is not a package, as in Lambda's /var/task)."""
    path = ROOT / "functions" / name / filename
    spec = importlib.util.spec_from_file_location(f"lambda_{name}_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def lambda_context(name: str) -> SimpleNamespace:
    return SimpleNamespace(
        function_name=name,
        function_version="$LATEST",
        invoked_function_arn=f"arn:aws:lambda:{REGION}:123456789012:function:{name}",
        memory_limit_in_mb=512,
        aws_request_id="5d6f6a1e-0c2b-4d8e-9f0a-1b2c3d4e5f60",
        log_group_name=f"/aws/lambda/{name}",
        log_stream_name="2025/11/23/[$LATEST]0123456789abcdef",
        get_remaining_time_in_millis=lambda: 10_000,
    )


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: Any


def invoke(module: ModuleType, event: dict[str, Any], text: bool = False) -> Response:
    """Call the handler as Lambda does and read its proxy response as API Gateway does."""
    result = module.handler(event, lambda_context(module.__name__))
    status, headers, body = mangum_response(result)
    return Response(status, headers, body if text else json.loads(body) if body else None)


def assert_request_id(response: Response | httpx.Response, event: dict[str, Any]) -> None:
    assert response.headers["x-request-id"] == event["requestContext"]["requestId"]


def assert_error(response: Response, status: int, type_: str, code: str | None = None) -> dict[str, Any]:
    assert response.status == status, response.body
    assert response.headers["content-type"] == "application/json"
    error = response.body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == type_ and error["message"]
    if code is not None:
        assert error["code"] == code
    if status < 500 and status not in (408, 409, 429):
        assert response.headers["x-should-retry"] == "false"
    return error


# --- ModelsFunction and StatsFunction (Mangum) under mock_aws -------------------------------


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, dynamodb_server: tuple[Any, dict[str, str]]) -> Iterator[None]:
    """The template's tables on the session's moto server (the request path's client reaches DynamoDB over
    HTTP, as it does on Lambda), mock_aws for the rest (SSM, Secrets Manager), and a Lambda-like environment.

    moto keeps its data in globals that every mock_aws and every in-process moto server of the
    session share, and a plain `with mock_aws()` wipes all of it on entry and exit: that would
    also delete the tables under the end-to-end tests' server (tests/conftest.py). So this
    starts the mock without the reset and removes only what it created.
    """
    for name in NOT_INHERITED:
        monkeypatch.delenv(name, raising=False)
    for name, value in FAKE_AWS.items():
        monkeypatch.setenv(name, value)
    endpoint = dynamodb_server[1]["AWS_ENDPOINT_URL_DYNAMODB"]
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", endpoint)
    reset_caches()
    mock = mock_aws()
    mock.start(reset=False)
    client = boto3.client("dynamodb", region_name=REGION, endpoint_url=endpoint)
    try:
        tables.create_all(client, TEMPLATE, TABLES)
        yield
    finally:
        for name in TABLES.values():
            with contextlib.suppress(client.exceptions.ResourceNotFoundException):
                client.delete_table(TableName=name)
        mock.stop(remove_data=False)
        reset_caches()


@pytest.fixture
def api_key(aws: None) -> tuple[str, keys.ApiKey]:
    return keys.create(owner="ops@example.com", name="handler tests")


@pytest.fixture
def models(aws: None) -> ModuleType:
    return load_function("models")


@pytest.fixture
def stats(aws: None) -> ModuleType:
    return load_function("stats")


def test_models_list(models: ModuleType) -> None:
    event = load_event("models-list")
    response = invoke(models, event)

    assert response.status == 200
    assert response.headers["content-type"] == "application/json"
    assert_request_id(response, event)
    assert response.body["object"] == "list"
    ids = [m["id"] for m in response.body["data"]]
    assert ids and len(ids) == len(set(ids))
    assert "gateway-echo" in ids  # the built-in model that needs no provider
    for model in response.body["data"]:
        assert model["object"] == "model"
        assert isinstance(model["created"], int) and model["owned_by"]


def test_models_retrieve(models: ModuleType) -> None:
    event = load_event("models-retrieve")
    response = invoke(models, event)

    assert response.status == 200, response.body
    assert_request_id(response, event)
    assert response.body["id"] == event["pathParameters"]["model"]
    assert response.body["object"] == "model"


def test_models_retrieve_unknown(models: ModuleType) -> None:
    event = load_event("models-retrieve-unknown")
    response = invoke(models, event)

    error = assert_error(response, 404, "invalid_request_error", "model_not_found")
    assert error["param"] == "model"
    assert event["pathParameters"]["model"] in error["message"]
    assert_request_id(response, event)


def test_the_chat_function_reads_provider_keys_from_the_templates_secret(
    aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PROVIDER_SECRET_ID (set on ChatFunction only) names a secret of provider keys; a key there makes its adapter."""
    openai = catalog().providers["openai"]

    def adapter() -> Any:
        reset_caches()  # the adapters, and the secret as read
        return registry.adapter(openai)

    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    secrets = boto3.client("secretsmanager", region_name=REGION)
    arn = secrets.create_secret(Name="handler-test-provider-keys", SecretString="{}")["ARN"]
    monkeypatch.setenv("PROVIDER_SECRET_ID", arn)
    settings.cache_clear()
    try:
        assert adapter() is None and not registry.available(openai)
        secrets.put_secret_value(SecretId=arn, SecretString=json.dumps({"OPENAI_API_KEY": "sk-from-the-secret"}))
        assert adapter().headers["authorization"] == "Bearer sk-from-the-secret"
        assert registry.available(openai)
    finally:
        secrets.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)
        reset_caches()


def test_models_and_stats_learn_the_configured_providers_without_reading_a_key(
    models: ModuleType, stats: ModuleType, api_key: tuple[str, keys.ApiKey], monkeypatch: pytest.MonkeyPatch
) -> None:
    """PROVIDER_KEY_NAMES_PARAMETER (ModelsFunction, StatsFunction) lists which keys the secret holds.

    Those functions read that list, through Powertools Parameters, and never the secret: their IAM
    role may not read it (tests/docs/test_template.py). A name on the list makes its provider available.
    """
    from aws_lambda_powertools.utilities import parameters

    def no_secret(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the models and stats functions may not read the provider secret")

    def openai_seen() -> tuple[bool, int]:
        """Whether the model list shows openai available, and how many providers /api/stats counts as active."""
        reset_caches()  # the list of key names, as read
        body = invoke(models, load_event("models-retrieve")).body  # gpt-4o-mini, offered by openai
        (offering,) = [p for p in body["providers"] if p["provider"] == "openai"]
        return offering["available"], invoke(stats, load_event("unified-stats", api_key[0])).body["active_providers"]

    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(parameters, "get_secret", no_secret)
    ssm = boto3.client("ssm", region_name=REGION)
    parameter = "/handler-test/provider-key-names"
    ssm.put_parameter(Name=parameter, Value="[]", Type="String")  # as template.yaml creates it
    monkeypatch.setenv("PROVIDER_KEY_NAMES_PARAMETER", parameter)
    settings.cache_clear()
    try:
        available, active = openai_seen()
        assert not available
        ssm.put_parameter(Name=parameter, Value=json.dumps(["OPENAI_API_KEY"]), Type="String", Overwrite=True)
        assert openai_seen() == (True, active + 1)
    finally:
        ssm.delete_parameter(Name=parameter)
        reset_caches()


def invoked_ok(function: ModuleType, name: str, key: str) -> Any:
    """The event `name`, with `key`, through the function's handler: answered 200 with the event's request id."""
    event = load_event(name, key)
    response = invoke(function, event)
    assert response.status == 200, response.body
    assert_request_id(response, event)
    check_api_response(name, event, response.status, response.headers, json.dumps(response.body))
    return response


def test_key_info(stats: ModuleType, api_key: tuple[str, keys.ApiKey]) -> None:
    key, record = api_key
    response = invoked_ok(stats, "key-info", key)
    data = response.body["data"]
    assert data["key_id"] == record.key_id
    assert data["owner"] == "ops@example.com" and data["name"] == "handler tests"
    assert data["status"] == "active"
    assert data["label"] == keys.display_prefix(key)
    assert key not in json.dumps(response.body)  # the key itself is never sent back


def test_key_info_missing_auth(stats: ModuleType) -> None:
    event = load_event("key-info-missing-auth")
    assert "Authorization" not in event["headers"]
    response = invoke(stats, event)

    assert_error(response, 401, "authentication_error")
    assert_request_id(response, event)


def test_key_info_unknown_key(stats: ModuleType) -> None:
    """The event as committed carries a placeholder key, which no table holds."""
    event = load_event("key-info")
    response = invoke(stats, event)

    error = assert_error(response, 401, "authentication_error")
    assert KEY_PLACEHOLDER not in error["message"]  # only a short prefix of a wrong key is shown
    assert_request_id(response, event)


def test_key_info_revoked_key(stats: ModuleType, api_key: tuple[str, keys.ApiKey]) -> None:
    key, record = api_key
    keys.set_status(record.key_id, "revoked")
    response = invoke(stats, load_event("key-info", key))

    assert_error(response, 401, "authentication_error")


# --- ChatFunction: functions/chat/main.py and run.sh ----------------------------------------


CHAT_DIR = ROOT / "functions" / "chat"


@pytest.mark.parametrize("name", ["unified-models", "unified-models-php"])
def test_unified_models(models: ModuleType, name: str) -> None:
    event = load_event(name)
    response = invoke(models, event)
    assert response.status == 200
    assert_request_id(response, event)
    rows = {row["gateway_model"]: row for row in response.body}
    echo = rows["gateway-echo"]
    assert (echo["platform"], echo["model_id"], echo["enabled"]) == ("builtin", "echo", True)
    assert isinstance(echo["id"], int) and echo["context_window"] == 32768


def test_playground_page_and_root(models: ModuleType) -> None:
    page = invoke(models, load_event("playground"), text=True)
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    assert "<html" in page.body.lower()
    root = invoke(models, load_event("root"), text=True)
    assert root.status == 302 and root.headers["location"] == "/api/playground"  # the stage is kept


def test_stats_of_the_caller(stats: ModuleType, api_key: tuple[str, keys.ApiKey]) -> None:
    body = invoked_ok(stats, "stats", api_key[0]).body
    assert (body["requests_today"], body["tokens_used"], body["success_rate"]) == (0, 0, None)
    assert body["plan"]["id"] and body["credit"]["balance"] is not None and body["daily"]


@pytest.mark.parametrize("name", ["unified-stats", "unified-stats-php"])
def test_unified_stats(stats: ModuleType, api_key: tuple[str, keys.ApiKey], name: str) -> None:
    response = invoke(stats, load_event(name, api_key[0]))
    assert response.status == 200, response.body
    assert set(response.body) == {"requests_today", "tokens_used", "avg_latency", "success_rate", "active_providers"}


def test_credits_and_generations(stats: ModuleType, api_key: tuple[str, keys.ApiKey]) -> None:
    key = api_key[0]
    credits = invoke(stats, load_event("credits", key))
    assert credits.status == 200 and "total_credits" in credits.body["data"]
    listed = invoke(stats, load_event("generations", key))
    assert listed.status == 200 and listed.body["data"] == [] and listed.body["next_cursor"] is None
    unknown = invoke(stats, load_event("generation-unknown", key))
    assert unknown.status == 404 and unknown.body["error"]["type"] == "invalid_request_error"


def test_chat_main_builds_the_chat_app() -> None:
    app = load_function("chat", "main.py").app
    routes = routes_of(app)
    assert ("POST", "/v1/chat/completions") in routes
    assert ("POST", "/v1/responses") in routes
    assert {("POST", "/v1/messages"), ("POST", "/v1/messages/count_tokens")} <= routes
    # Each Lambda imports only the routes it serves.
    assert not {path for _, path in routes} & {"/v1/models", "/v1/key"}


def test_run_sh_starts_uvicorn_on_main_app() -> None:
    run_sh = CHAT_DIR / "run.sh"
    assert os.access(run_sh, os.X_OK), "Lambda runs run.sh itself: it must be executable"
    text = run_sh.read_text()
    assert text.startswith("#!/bin/bash\n") and "\r" not in text
    assert "uvicorn main:app" in text
    assert "${PORT" in text  # the port the Web Adapter forwards to (PORT in template.yaml)
    assert "${LAMBDA_TASK_ROOT}" in text  # main.py lives there; the layer's packages in /opt/python


@pytest.fixture(scope="module")
def chat_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatServer]:
    """functions/chat/run.sh as Lambda starts it, with DynamoDB on moto's server."""
    workdir = tmp_path_factory.mktemp("chat")
    with contextlib.ExitStack() as stack:
        endpoint = stack.enter_context(moto_server(workdir / "moto.log"))
        key = create_key_on(endpoint)
        port = free_port()
        env = {name: value for name, value in os.environ.items() if name not in NOT_INHERITED}
        env.update(FAKE_AWS)
        env.update(
            {
                "AWS_ENDPOINT_URL_DYNAMODB": endpoint,
                "PORT": str(port),
                "LAMBDA_TASK_ROOT": str(CHAT_DIR),
                # run.sh runs `python`: this interpreter, which has the gateway package installed.
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
                "BUILTIN_TOKEN_DELAY": "0",
            }
        )
        log = workdir / "run.sh.log"
        out = stack.enter_context(log.open("wb"))
        # Started from elsewhere on purpose: like Lambda, run.sh finds main.py through LAMBDA_TASK_ROOT.
        process = subprocess.Popen([str(CHAT_DIR / "run.sh")], cwd=workdir, env=env, stdout=out, stderr=out)
        stack.callback(stop, process)
        server = ChatServer(url=f"http://127.0.0.1:{port}", key=key, log=log)

        # The Web Adapter's readiness check: GET / until any status below 500.
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"run.sh exited with {process.returncode}:\n{server.logs()}"
            assert time.monotonic() < deadline, f"run.sh did not become ready:\n{server.logs()}"
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{server.url}/", timeout=2, trust_env=False).status_code < 500:
                    break
            time.sleep(0.05)
        yield server


def test_chat_unknown_path_is_a_json_404(chat_server: ChatServer) -> None:
    """Also what the Web Adapter's readiness check (GET /) sees: ready, since it is below 500."""
    response = httpx.get(f"{chat_server.url}/", trust_env=False)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == "not_found"
    assert response.headers["x-request-id"]


def answered(chat_server: ChatServer, name: str, stream: bool = False) -> tuple[dict[str, Any], Any]:
    """The event `name` sent to the chat function: answered 200 (a stream where `stream`), with its request id."""
    event = load_event(name, chat_server.key)
    response = chat_server.send(event)
    assert response.status_code == 200, f"{response.text}\n{chat_server.logs()}"
    if stream:
        assert response.headers["content-type"].startswith("text/event-stream")
    assert_request_id(response, event)
    check_api_response(name, event, response.status_code, dict(response.headers), response.text, chat_server.logs())
    return event, response


def test_chat_completion(chat_server: ChatServer) -> None:
    event, response = answered(chat_server, "chat-completion")
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == json.loads(event["body"])["model"]
    (choice,) = body["choices"]
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"]
    assert choice["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0


def test_chat_completion_stream(chat_server: ChatServer) -> None:
    _event, response = answered(chat_server, "chat-completion-stream", stream=True)
    data = sse_data(response.text)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert len({c["id"] for c in chunks}) == 1
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def test_responses(chat_server: ChatServer) -> None:
    from openai.types.responses import Response as OpenAIResponse

    event, response = answered(chat_server, "responses")
    body = response.json()
    parsed = OpenAIResponse.model_validate(body, strict=True)
    assert body["object"] == "response" and body["status"] == "completed"
    assert body["model"] == json.loads(event["body"])["model"]
    assert parsed.output_text == "You said: Say hello in three words."
    assert body["usage"]["total_tokens"] == body["usage"]["input_tokens"] + body["usage"]["output_tokens"] > 0


def test_responses_stream(chat_server: ChatServer) -> None:
    from openai.types.responses import ResponseStreamEvent
    from pydantic import TypeAdapter

    _event, response = answered(chat_server, "responses-stream", stream=True)
    data = sse_data(response.text)
    events = [TypeAdapter(ResponseStreamEvent).validate_json(d, strict=True) for d in data]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == events[-1].response.output_text == "You said: Say hello in three words."


def test_messages(chat_server: ChatServer) -> None:
    """Anthropic's Messages API, with the key in `x-api-key` as Anthropic's SDKs send it."""
    from anthropic.types import Message

    event, response = answered(chat_server, "messages")
    body = response.json()
    message = Message.model_validate(body, strict=True)
    assert body["type"] == "message" and body["model"] == json.loads(event["body"])["model"]
    assert message.content[0].type == "text" and message.content[0].text == "You said: Say hello in three words."
    assert message.stop_reason == "end_turn" and message.usage.input_tokens > 0 and message.usage.output_tokens > 0


def test_messages_stream(chat_server: ChatServer) -> None:
    from anthropic.types import RawMessageStreamEvent
    from pydantic import TypeAdapter

    _event, response = answered(chat_server, "messages-stream", stream=True)
    names = sse_names(response.text)
    data = [json.loads(d) for d in sse_data(response.text)]
    assert [d["type"] for d in data] == names
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    events = [TypeAdapter(RawMessageStreamEvent).validate_python(d, strict=True) for d in data if d["type"] != "ping"]
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta")
    assert text == "You said: Say hello in three words."
    assert data[-2]["delta"]["stop_reason"] == "end_turn" and data[-2]["usage"]["output_tokens"] > 0


def test_messages_count_tokens(chat_server: ChatServer) -> None:
    _event, response = answered(chat_server, "messages-count-tokens")
    assert set(response.json()) == {"input_tokens"} and response.json()["input_tokens"] > 0


def test_chat_invalid_json(chat_server: ChatServer) -> None:
    event = load_event("chat-invalid-json", chat_server.key)
    response = chat_server.send(event)

    assert response.status_code == 400
    assert response.headers["x-should-retry"] == "false"
    assert_request_id(response, event)
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]


def test_chat_without_a_valid_key(chat_server: ChatServer) -> None:
    """The committed event carries a placeholder key: 401 before anything else happens."""
    event = load_event("chat-completion")
    response = chat_server.send(event)

    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    assert_request_id(response, event)
