"""template.yaml: valid for SAM and cfn-lint, and true to what the code and events/ rely on.

The SAM CLI comes from scripts/sam, which installs it into .venv-sam/ on first use (a minute or
two). Where it cannot be installed (no network) these tests skip, except under CI, where they fail.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gateway.storage.tables import _load_template, definitions

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
SAM = ROOT / "scripts" / "sam"
SAM_VENV_BIN = ROOT / ".venv-sam" / "bin"
INSTALL_TIMEOUT = 1200  # seconds: the first run installs SAM CLI and its dependencies from PyPI


def run(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1")}
    return subprocess.run(
        [str(a) for a in args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="session")
def sam_cli() -> Path:
    """scripts/sam, installed and working; the tests that need it skip without it (fail under CI)."""
    try:
        result = run(SAM, "--version", timeout=INSTALL_TIMEOUT)
        problem = None if result.returncode == 0 else f"exit {result.returncode}:\n{result.stderr[-4000:]}"
    except (OSError, subprocess.TimeoutExpired) as exc:
        problem = repr(exc)
    if problem:
        message = f"scripts/sam could not install or run SAM CLI: {problem}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return SAM


def test_sam_validate_lint(sam_cli: Path) -> None:
    result = run(sam_cli, "validate", "--lint", "--template-file", TEMPLATE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr


def test_cfn_lint_has_no_findings(sam_cli: Path) -> None:
    """Errors, warnings and informational findings alike (cfn-lint is installed with SAM CLI)."""
    result = run(SAM_VENV_BIN / "cfn-lint", "--include-checks", "I", "--format", "parseable", "--", TEMPLATE)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


# Run with .venv-sam's Python: SAM CLI's own translation (what `sam validate` does, offline),
# printed as JSON.
TRANSLATE = """
import json, sys
from samcli.lib.translate.sam_template_validator import SamTemplateValidator
from samcli.yamlhelper import yaml_parse

class NoManagedPolicies:
    def load(self):
        return {}

with open(sys.argv[1]) as f:
    template = yaml_parse(f.read())
translated = SamTemplateValidator(template, NoManagedPolicies()).get_translated_template_if_valid()
print(json.dumps(yaml_parse(translated), default=str))
"""


@pytest.fixture(scope="session")
def translated(sam_cli: Path) -> dict[str, Any]:
    result = run(SAM_VENV_BIN / "python", "-c", TRANSLATE, TEMPLATE)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def integration(translated: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    body = translated["Resources"]["GatewayApi"]["Properties"]["Body"]
    return body["paths"][path][method]["x-amazon-apigateway-integration"]


def test_chat_streams_through_the_response_streaming_invoke(translated: dict[str, Any]) -> None:
    chat = integration(translated, "/v1/chat/completions", "post")
    assert chat["type"] == "aws_proxy"
    assert chat["responseTransferMode"] == "STREAM"
    uri = json.dumps(chat["uri"])
    assert "/2021-11-15/functions/${ChatFunction.Arn}/response-streaming-invocations" in uri
    assert chat["timeoutInMillis"] == 900_000  # a streamed response may last 15 minutes

    for path in ("/api/chat", "/api/chat.php"):
        assert integration(translated, path, "post")["responseTransferMode"] == "STREAM"
    for path in ("/v1/models", "/v1/models/{model+}", "/v1/key", "/v1/stats", "/api/models", "/playground"):
        buffered = integration(translated, path, "get")
        assert "responseTransferMode" not in buffered
        assert "/2015-03-31/functions/" in json.dumps(buffered["uri"])


def test_one_rest_api_with_one_stage(translated: dict[str, Any]) -> None:
    resources = translated["Resources"].values()
    assert [r["Type"] for r in resources].count("AWS::ApiGateway::RestApi") == 1
    (stage,) = [r for r in resources if r["Type"] == "AWS::ApiGateway::Stage"]
    assert stage["Properties"]["StageName"] == {"Ref": "StageName"}
    # Without OpenApiVersion, SAM gives the deployment a second stage, named "Stage".
    (deployment,) = [r for r in resources if r["Type"] == "AWS::ApiGateway::Deployment"]
    assert "StageName" not in deployment["Properties"]


# --- The template as the code reads it (no SAM CLI needed) ---------------------------------


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return _load_template(TEMPLATE)


def test_table_definitions_match_the_code() -> None:
    from gateway.storage import schema

    tables = definitions(TEMPLATE)
    assert set(tables) == {"KeysTable", "UsageTable"}

    keys = tables["KeysTable"]["create"]
    assert keys["KeySchema"] == [{"AttributeName": "key_hash", "KeyType": "HASH"}]
    assert {"AttributeName": "key_id", "AttributeType": "S"} in keys["AttributeDefinitions"]
    assert {"AttributeName": "key_hash", "AttributeType": "S"} in keys["AttributeDefinitions"]
    (index,) = keys["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "key_id-index"
    assert index["KeySchema"] == [{"AttributeName": "key_id", "KeyType": "HASH"}]
    assert index["Projection"] == {"ProjectionType": "KEYS_ONLY"}

    usage = tables["UsageTable"]["create"]
    assert usage["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    types = {d["AttributeName"]: d["AttributeType"] for d in usage["AttributeDefinitions"]}
    assert types == {"pk": "S", "sk": "S", "open_shard": "S", "open_at": "N"}
    (index,) = usage["GlobalSecondaryIndexes"]  # the sweeper's sparse index (gateway/storage/schema.py)
    assert index["IndexName"] == schema.OPEN_INDEX
    assert index["KeySchema"] == [
        {"AttributeName": "open_shard", "KeyType": "HASH"},
        {"AttributeName": "open_at", "KeyType": "RANGE"},
    ]
    assert index["Projection"] == {"ProjectionType": "KEYS_ONLY"}
    assert tables["UsageTable"]["ttl"] == {"AttributeName": "expires_at", "Enabled": True}
    assert tables["KeysTable"]["ttl"] is None


def test_functions_get_the_tables_and_settings_the_code_reads(template: dict[str, Any]) -> None:
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["KEYS_TABLE"] == "KeysTable"  # the loader reads `!Ref X` as "X"
    assert variables["USAGE_TABLE"] == "UsageTable"
    assert variables["PROVIDER_SECRET_ID"] == "ProviderSecret"
    assert variables["UPSTREAM_TIMEOUT_SECONDS"] == "UpstreamTimeoutSeconds"
    assert template["Parameters"]["StageName"]["Default"] == "api"


def routes(resource: dict[str, Any]) -> set[tuple[str, str]]:
    events = resource["Properties"].get("Events", {}).values()
    return {(e["Properties"]["Method"].upper(), e["Properties"]["Path"]) for e in events if e["Type"] == "Api"}


def test_functions_routes_and_handlers(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    chat, models, stats = resources["ChatFunction"], resources["ModelsFunction"], resources["StatsFunction"]

    assert routes(chat) == {("POST", "/v1/chat/completions"), ("POST", "/api/chat"), ("POST", "/api/chat.php")}
    assert routes(models) == {
        ("GET", "/v1/models"),
        ("GET", "/v1/models/{model+}"),
        ("GET", "/api/models"),
        ("GET", "/api/models.php"),
        ("GET", "/playground"),
        ("GET", "/"),
    }
    assert routes(stats) == {
        ("GET", path)
        for path in (
            "/v1/key",
            "/v1/stats",
            "/v1/credits",
            "/v1/generation",
            "/v1/generations",
            "/api/stats",
            "/api/stats.php",
        )
    }

    assert chat["Properties"]["Handler"] == "run.sh"
    chat_env = chat["Properties"]["Environment"]["Variables"]
    assert chat_env["AWS_LAMBDA_EXEC_WRAPPER"] == "/opt/bootstrap"
    assert chat_env["AWS_LWA_INVOKE_MODE"] == "response_stream"
    assert "AWS_LWA_REMOVE_BASE_PATH" not in chat_env  # the adapter already forwards the path without the stage
    assert any("LambdaAdapterLayerArm64" in str(layer) for layer in chat["Properties"]["Layers"])
    for event in chat["Properties"]["Events"].values():  # every chat route streams
        assert event["Properties"]["ResponseTransferMode"] == "RESPONSE_STREAM"
        assert event["Properties"]["TimeoutInMillis"] == 900_000
    assert chat["Properties"]["Timeout"] == 900

    for resource in (models, stats):
        assert resource["Properties"]["Handler"] == "app.handler"
    for name, resource in resources.items():
        if resource["Type"] == "AWS::Serverless::Function":
            code = ROOT / resource["Properties"]["CodeUri"]
            handler = resource["Properties"]["Handler"]
            entry = code / (handler if handler.endswith(".sh") else handler.split(".")[0] + ".py")
            assert entry.is_file(), f"{name}: {entry} is missing"


def test_layer_builds_for_the_runtime(template: dict[str, Any]) -> None:
    layer = template["Resources"]["GatewayLayer"]
    assert layer["Properties"]["ContentUri"].rstrip("/") == "layers/gateway"
    assert layer["Metadata"] == {"BuildMethod": "makefile", "BuildArchitecture": "arm64"}  # layers/gateway/Makefile
    assert (ROOT / "layers" / "gateway" / "requirements.txt").is_file()
    function_globals = template["Globals"]["Function"]
    assert function_globals["Runtime"] == "python3.12"
    assert function_globals["Architectures"] == ["arm64"]


def test_least_privilege(template: dict[str, Any]) -> None:
    def policies(name: str) -> list[tuple[str, str]]:
        found = []
        for policy in template["Resources"][name]["Properties"]["Policies"]:
            ((kind, args),) = policy.items()
            found.append((kind, args.get("TableName") or args.get("SecretArn")))
        return sorted(found)

    assert policies("ChatFunction") == [
        ("AWSSecretsManagerGetSecretValuePolicy", "ProviderSecret"),
        ("DynamoDBCrudPolicy", "UsageTable"),
        ("DynamoDBReadPolicy", "KeysTable"),
    ]
    assert policies("ModelsFunction") == [("AWSSecretsManagerGetSecretValuePolicy", "ProviderSecret")]
    assert policies("StatsFunction") == [  # the secret: which providers are configured, for active_providers
        ("AWSSecretsManagerGetSecretValuePolicy", "ProviderSecret"),
        ("DynamoDBReadPolicy", "KeysTable"),
        ("DynamoDBReadPolicy", "UsageTable"),
    ]


def test_outputs(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    assert set(outputs) >= {"BaseUrl", "KeysTableName", "UsageTableName", "ProviderSecretArn"}
    base_url = outputs["BaseUrl"]["Value"]
    assert base_url.startswith("https://${GatewayApi}.execute-api.${AWS::Region}.")
    assert base_url.endswith("/${StageName}/v1")


# --- events/: each one a request API Gateway would really send to that function ------------


EVENTS = sorted((ROOT / "events").glob("*.json"))


def test_there_are_events_for_every_route(template: dict[str, Any]) -> None:
    every_route = set().union(
        *(routes(r) for r in template["Resources"].values() if r["Type"] == "AWS::Serverless::Function")
    )
    events = [json.loads(p.read_text()) for p in EVENTS]
    covered = {(e["httpMethod"], e["resource"]) for e in events}
    assert covered == every_route
    request_ids = [e["requestContext"]["requestId"] for e in events]
    assert len(set(request_ids)) == len(request_ids), "each event has its own request id"


@pytest.mark.parametrize("path", EVENTS, ids=lambda p: p.stem)
def test_event_is_a_rest_api_proxy_event(path: Path, template: dict[str, Any]) -> None:
    event = json.loads(path.read_text())
    context = event["requestContext"]
    stage = template["Parameters"]["StageName"]["Default"]
    assert context["stage"] == stage
    assert context["path"] == f"/{stage}{event['path']}"  # API Gateway's path keeps the stage; `path` does not
    assert context["resourcePath"] == event["resource"]
    assert context["httpMethod"] == event["httpMethod"]
    assert context["requestId"] and context["identity"]["sourceIp"]
    assert {k: [v] for k, v in event["headers"].items()} == event["multiValueHeaders"]
    assert event["isBase64Encoded"] is False
    if "{model+}" in event["resource"]:
        assert event["path"] == "/v1/models/" + event["pathParameters"]["model"]
    if event["body"] is not None:
        assert event["headers"]["Content-Type"] == "application/json"
