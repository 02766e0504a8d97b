"""template.yaml: valid for SAM and cfn-lint, and true to what the code and events/ rely on.

Each function's IAM statements are exactly the AWS calls its code can reach, read from the source
(tests/support/aws_calls.py), on the resources a maintained table (CALLS) says they touch.

The SAM CLI comes from scripts/sam, which installs it into .venv-sam/ on first use (a minute or
two). Where it cannot be installed (no network) these tests skip, except under CI, where they fail.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gateway import catalog
from gateway.config import BUNDLED_CATALOG
from gateway.storage import schema
from gateway.storage.tables import _load_template, definitions
from lambdas.builds import load_template
from tests.support import aws_calls
from tests.support.routes import served as routes_of

ROOT = Path(__file__).resolve().parents[2]
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
    # The alias, which SAM moves to each published (SnapStart-snapshotted) version; never $LATEST.
    assert "/2021-11-15/functions/${ChatFunctionAliaslive}/response-streaming-invocations" in uri
    assert chat["timeoutInMillis"] == 900_000  # a streamed response may last 15 minutes

    for path in ("/v1/responses", "/chat", "/chat.php"):
        assert integration(translated, path, "post")["responseTransferMode"] == "STREAM"
    for path in ("/v1/models", "/v1/models/{model+}", "/v1/key", "/v1/stats", "/models", "/playground"):
        buffered = integration(translated, path, "get")
        assert "responseTransferMode" not in buffered
        assert "/2015-03-31/functions/" in json.dumps(buffered["uri"])
        assert "Aliaslive}/invocations" in json.dumps(buffered["uri"]), path


# What `sam deploy` hands CloudFormation after packaging: every artifact in S3, under its content's hash.
VERSIONS = """
import json, sys
from samcli.yamlhelper import yaml_parse
from samtranslator.translator.transform import transform

class NoManagedPolicies:
    def load(self):
        return {}

template = yaml_parse(open(sys.argv[1]).read())
for name, resource in template["Resources"].items():
    if resource["Type"] == "AWS::Serverless::Function":
        resource["Properties"]["CodeUri"] = f"s3://artifacts/{name}.zip"
    if resource["Type"] == "AWS::Serverless::LayerVersion":
        resource["Properties"]["ContentUri"] = f"s3://artifacts/{sys.argv[2]}.zip"
out = transform(template, {}, NoManagedPolicies())
print(json.dumps(sorted(k for k, v in out["Resources"].items() if v["Type"] == "AWS::Lambda::Version")))
"""


def test_a_new_gateway_layer_publishes_new_versions(sam_cli: Path) -> None:
    """The code is in the layer: a deploy that changes only the layer must move every alias to a new version."""

    def versions(layer_artifact: str) -> list[str]:
        result = run(SAM_VENV_BIN / "python", "-c", VERSIONS, TEMPLATE, layer_artifact)
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout.splitlines()[-1])

    before, after = versions("layer-1"), versions("layer-2")
    assert len(before) == len(after) == 3  # chat, models, stats
    assert not set(before) & set(after), (before, after)


def test_snapstart_on_the_three_api_functions(translated: dict[str, Any]) -> None:
    """Each API function publishes versions with SnapStart, and API Gateway may invoke only their alias."""
    resources = translated["Resources"]
    for name in ("ChatFunction", "ModelsFunction", "StatsFunction"):
        assert resources[name]["Properties"]["SnapStart"] == {"ApplyOn": "PublishedVersions"}, name
        alias = resources[f"{name}Aliaslive"]
        assert alias["Type"] == "AWS::Lambda::Alias"
        permissions = [
            r["Properties"]
            for r in resources.values()
            if r["Type"] == "AWS::Lambda::Permission" and r["Properties"]["Principal"] == "apigateway.amazonaws.com"
        ]
        targets = [json.dumps(p["FunctionName"]) for p in permissions]
        assert any(f"{name}Aliaslive" in t for t in targets), name
        assert not any(t == json.dumps({"Ref": name}) for t in targets), f"{name}: $LATEST must not be invocable"
    assert "SnapStart" not in resources["SweeperFunction"]["Properties"]  # a schedule, not a client, waits on it


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
    assert variables["BEDROCK_REGION"] == "BedrockRegion"  # the chat function calls it; models and stats show it
    assert variables["UPSTREAM_TIMEOUT_SECONDS"] == "UpstreamTimeoutSeconds"
    assert template["Parameters"]["StageName"]["Default"] == "api"
    assert template["Parameters"]["BedrockRegion"]["Default"] == ""  # Bedrock is opted into, as locally

    # The provider secret's id only where the code reads the secret; the list of its key names
    # only where the code reads that instead.
    assert not {"PROVIDER_SECRET_ID", "PROVIDER_KEY_NAMES_PARAMETER"} & set(variables), "per function, not global"
    for name, function in FUNCTIONS.items():
        own = template["Resources"][name]["Properties"].get("Environment", {}).get("Variables", {})
        services = {call.service for call in aws_calls.calls(function)}
        assert (own.get("PROVIDER_SECRET_ID") == "ProviderSecret") == ("secretsmanager" in services), name
        assert (own.get("PROVIDER_KEY_NAMES_PARAMETER") == "ProviderKeyNames") == ("ssm" in services), name


def routes(resource: dict[str, Any]) -> set[tuple[str, str]]:
    events = resource["Properties"].get("Events", {}).values()
    return {(e["Properties"]["Method"].upper(), e["Properties"]["Path"]) for e in events if e["Type"] == "Api"}


def served(factory: str) -> set[tuple[str, str]]:
    """The routes a function's app serves."""
    from gateway.api import app

    return routes_of(getattr(app, factory)())


def test_functions_routes_and_handlers(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    chat, models, stats = resources["ChatFunction"], resources["ModelsFunction"], resources["StatsFunction"]

    # Each function's API events are exactly the routes its app serves: a route the code adds
    # without the template (or the reverse) fails here, not once deployed.
    assert routes(chat) == served("chat_app")
    assert routes(models) == served("models_app")
    assert routes(stats) == served("stats_app")
    assert {("POST", "/v1/chat/completions"), ("POST", "/v1/messages"), ("POST", "/v1/responses")} <= routes(chat)
    assert {("GET", "/v1/models"), ("GET", "/v1/chat/models"), ("GET", "/playground")} <= routes(models)
    assert {("GET", "/v1/key"), ("GET", "/v1/credits"), ("GET", "/stats")} <= routes(stats)

    assert chat["Properties"]["Handler"] == "run.sh"
    chat_env = chat["Properties"]["Environment"]["Variables"]
    assert chat_env["AWS_LAMBDA_EXEC_WRAPPER"] == "/opt/bootstrap"
    assert chat_env["AWS_LWA_INVOKE_MODE"] == "response_stream"
    assert "AWS_LWA_REMOVE_BASE_PATH" not in chat_env  # the adapter already forwards the path without the stage
    # The adapter's SnapStart hooks, answered by the chat app itself (api/snapstart.py).
    assert chat_env["AWS_LWA_SNAPSTART_BEFORE_CHECKPOINT_PATH"] == "/lwa/snapstart/before"
    assert chat_env["AWS_LWA_SNAPSTART_AFTER_RESTORE_PATH"] == "/lwa/snapstart/after"
    adapter = template["Parameters"]["WebAdapterLayerVersion"]
    assert adapter["Default"] >= 30 and adapter["MinValue"] == 30  # adapter 1.1.0: the first with the hooks
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


# --- Least privilege: each function's IAM statements are exactly what its code calls ----------
#
# CALLS is the maintained table: for each function, every AWS call its code can reach (by module,
# top-level function or class, and method), and the resource it acts on. The IAM action comes from
# the call itself (tests/support/aws_calls.py). One test keeps the table equal to what tests/support/aws_calls.py
# reads in the source, and another keeps the template's statements equal to the table's grants: a
# new call without its permission fails, and so does a permission no call needs any more.

FUNCTIONS = {
    "ChatFunction": "chat",
    "ModelsFunction": "models",
    "StatsFunction": "stats",
    "SweeperFunction": "sweeper",
    "TallyFunction": "tally",
}
KEYS = "KeysTable"  # resources as the template writes them: !GetAtt X.Arn and !Ref X read as X
USAGE = "UsageTable"
OPEN_RESERVATIONS = f"UsageTable/index/{schema.OPEN_INDEX}"  # !Sub ${UsageTable.Arn}/index/NAME
SECRET = "ProviderSecret"
KEY_NAMES = "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter${ProviderKeyNames}"
BEDROCK = "<the catalog's Bedrock models>"  # bedrock_resources() below
ITEMS = None  # a transaction: its items, listed on their own, carry the permissions

SETTLEMENT = {  # settle_plan's transaction and its two items: the account, and the record with its tally
    ("gateway.accounts.settlement", "settle_plan", "TransactWriteItems"): ITEMS,
    ("gateway.accounts.account", "release_item", "Update"): USAGE,
    ("gateway.stats.generations", "put_item", "Put"): USAGE,
}
ACCOUNT = {  # reading an account opens it or rolls it over to this month first
    ("gateway.accounts.account", "get_op", "GetItem"): USAGE,
    ("gateway.accounts.account", "open_plan", "PutItem"): USAGE,
}
UPDATES = {  # every UpdateItem of the usage table is built by storage/writes.py's `update`
    ("gateway.storage.writes", "update", "UpdateItem"): USAGE,
}
CALLS: dict[str, dict[tuple[str, str, str], str | None]] = {
    "ChatFunction": {
        ("gateway.accounts.keys", "_lookup_op", "GetItem"): KEYS,
        **ACCOUNT,
        **UPDATES,  # admission, extension, counting, roll-over, provider health
        **SETTLEMENT,
        ("gateway.routing.health", "_refresh_plan", "BatchGetItem"): USAGE,
        ("gateway.providers.credentials", "_secret", "get_secret"): SECRET,
        ("gateway.providers.bedrock", "Bedrock", "converse"): BEDROCK,
        ("gateway.providers.bedrock", "Bedrock", "converse_stream"): BEDROCK,
    },
    "ModelsFunction": {
        ("gateway.providers.credentials", "_names", "get_parameter"): KEY_NAMES,
    },
    "StatsFunction": {
        ("gateway.accounts.keys", "_lookup_op", "GetItem"): KEYS,
        **ACCOUNT,
        **UPDATES,  # a month's roll-over
        ("gateway.stats.counters", "read_key", "get_item"): USAGE,
        ("gateway.stats.counters", "read_shared_many", "batch_get_item"): USAGE,
        ("gateway.stats.queries", "_query_all", "query"): USAGE,
        ("gateway.stats.queries", "shared_days", "batch_get_item"): USAGE,
        ("gateway.stats.generations", "get", "get_item"): USAGE,
        ("gateway.stats.generations", "page", "query"): USAGE,
        ("gateway.routing.health", "_refresh_plan", "BatchGetItem"): USAGE,
        ("gateway.providers.credentials", "_names", "get_parameter"): KEY_NAMES,
    },
    "SweeperFunction": {
        ("gateway.accounts.account", "indexed_before", "query"): OPEN_RESERVATIONS,
        ("gateway.accounts.account", "get_op", "GetItem"): USAGE,
        **UPDATES,  # the index of open reservations
        **SETTLEMENT,
    },
    "TallyFunction": {  # which records are counted; a transaction of their marks and the counters' updates
        ("gateway.stats.tallies", "_uncounted", "BatchGetItem"): USAGE,
        ("gateway.stats.tallies", "count_plan", "TransactWriteItems"): ITEMS,
        ("gateway.stats.tallies", "_mark", "Update"): USAGE,
        ("gateway.stats.tallies", "_add", "Update"): USAGE,
    },
}
# A system-defined cross-region inference profile: its id is the model's with a geography in front.
INFERENCE_PROFILE = re.compile(r"^(us|us-gov|eu|apac|jp|au|ca|global)\.(.+)$")


def bedrock_resources() -> set[str]:
    """What the bundled catalog sends to Bedrock, as resource ARNs (catalog_tools.bedrock_arns, the one derivation
    `gateway-admin catalog check` uses): an inference profile in the calling region and its model in every region
    it may route to (IAM checks both), or a foundation model in the calling region."""
    from gateway.admin.catalog_tools import bedrock_arns

    cat = catalog.read([BUNDLED_CATALOG])
    found = set()
    for model in cat.models.values():
        for offering in model.offerings:
            provider = cat.providers[offering.provider]
            if provider.protocol == "bedrock":
                found |= set(bedrock_arns(offering.upstream_model, provider.region or "${BedrockRegion}"))
    return found


def resource_name(resource: Any) -> str:
    """A statement's Resource as CALLS writes it."""
    if isinstance(resource, str):
        return resource
    ((kind, value),) = resource.items()
    if kind == "Ref":
        return value
    if kind == "Fn::GetAtt" and value[1] == "Arn":
        return value[0]
    if kind == "Fn::Sub" and isinstance(value, str):
        return re.sub(r"\$\{(\w+)\.Arn\}", r"\1", value)
    raise AssertionError(f"a resource this test cannot read: {resource}")


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def grants(template: dict[str, Any], function: str) -> dict[tuple[str, str], str | None]:
    """(action, resource) -> the condition it is granted under (None: always), from explicit statements only."""
    found: dict[tuple[str, str], str | None] = {}
    for policy in template["Resources"][function]["Properties"].get("Policies", []):
        condition = None
        if isinstance(policy, dict) and "Fn::If" in policy:
            condition, policy, otherwise = policy["Fn::If"]
            assert otherwise == {"Ref": "AWS::NoValue"}, f"{function}: an !If grants nothing otherwise"
        assert isinstance(policy, dict) and set(policy) <= {"Version", "Statement"}, (
            f"{function}: {policy} is no policy statement; SAM policy templates and managed policies grant "
            "more than the code calls"
        )
        for statement in policy["Statement"]:
            assert statement["Effect"] == "Allow" and set(statement) <= {"Sid", "Effect", "Action", "Resource"}
            for action in as_list(statement["Action"]):
                assert "*" not in action, f"{function}: {action}"
                for resource in as_list(statement["Resource"]):
                    found[(action, resource_name(resource))] = condition
    return found


@pytest.fixture(scope="module")
def cfn() -> dict[str, Any]:
    return load_template(TEMPLATE)


def test_every_function_is_in_the_table(template: dict[str, Any]) -> None:
    functions = {n for n, r in template["Resources"].items() if r["Type"] == "AWS::Serverless::Function"}
    assert functions == set(FUNCTIONS) == set(CALLS)
    for name, function in FUNCTIONS.items():
        assert template["Resources"][name]["Properties"]["CodeUri"].rstrip("/") == f"functions/{function}"


@pytest.mark.parametrize("function", FUNCTIONS)
def test_the_table_holds_every_aws_call_the_code_can_reach(function: str) -> None:
    """A call the table lacks fails here, and so does one the function's code can no longer reach."""
    found = {call.site: call for call in aws_calls.calls(FUNCTIONS[function])}
    listed = CALLS[function]
    new = sorted(f"{c.module}:{c.line} {c.scope}: {c.method} ({c.action})" for s, c in found.items() if s not in listed)
    gone = sorted(str(site) for site in listed if site not in found)
    assert not new, f"{function} can make AWS calls that CALLS does not list, so no permission covers them: {new}"
    assert not gone, f"CALLS lists calls that {function} cannot make any more: {gone}"
    for site, call in found.items():
        resource = listed[site]
        assert (call.action is None) == (resource is ITEMS), f"{site}: only a transaction is authorized by its items"
        if call.table:  # the table that its TableName names
            expected = {"keys_table": {KEYS}, "usage_table": {USAGE, OPEN_RESERVATIONS}}[call.table]
            assert resource in expected, f"{site} names {call.table}, not {resource}"
        if call.index:
            assert resource == OPEN_RESERVATIONS, f"{site} queries an index, which needs its own ARN"


@pytest.mark.parametrize("function", FUNCTIONS)
def test_functions_make_clients_only_for_services_the_reading_knows(function: str) -> None:
    """tests/support/aws_calls.py finds the calls of these clients; a client of another service must be taught to it."""
    assert aws_calls.clients(FUNCTIONS[function]) <= {
        ("gateway.storage.dynamo", "client", "dynamodb"),
        ("gateway.providers.bedrock", "shared_client", "bedrock-runtime"),
    }
    # Calls are found on `dynamo.client().op(...)` and on names ending in "client": keep to those.
    assert aws_calls.loose_clients(FUNCTIONS[function]) == []


@pytest.mark.parametrize("function", FUNCTIONS)
def test_policies_grant_exactly_what_the_code_calls(cfn: dict[str, Any], function: str) -> None:
    calls = {call.site: call for call in aws_calls.calls(FUNCTIONS[function])}
    needed = set()
    for site, resource in CALLS[function].items():
        action = calls[site].action
        if action is None:
            continue
        for arn in bedrock_resources() if resource == BEDROCK else {resource}:
            needed.add((action, arn))
    granted = grants(cfn, function)
    extra, missing = sorted(set(granted) - needed), sorted(needed - set(granted))
    assert not extra, f"{function} is granted what its code never calls: {extra}"
    assert not missing, f"{function} calls what it is not granted: {missing}"


def test_chat_can_invoke_the_catalogs_bedrock_models_where_bedrock_is_on(cfn: dict[str, Any]) -> None:
    models = bedrock_resources()
    assert models, "the bundled catalog routes to Bedrock, so this test has something to check"
    granted = grants(cfn, "ChatFunction")
    for action in ("bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"):  # Converse, ConverseStream
        for arn in models:
            # Granted only when BedrockRegion is set (a profile's models in every region it routes to): off otherwise.
            assert granted[(action, arn)] == "BedrockEnabled"
    assert cfn["Conditions"]["BedrockEnabled"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "BedrockRegion"}, ""]}]}
    for name in ("ModelsFunction", "StatsFunction", "SweeperFunction"):
        assert not [g for g in grants(cfn, name) if g[0].startswith("bedrock:")], name


def test_the_key_names_parameter_is_not_secret(cfn: dict[str, Any]) -> None:
    """A plain String parameter holding names only, which models and stats may read instead of the secret."""
    parameter = cfn["Resources"]["ProviderKeyNames"]
    assert parameter["Type"] == "AWS::SSM::Parameter"
    assert parameter["Properties"]["Type"] == "String" and json.loads(parameter["Properties"]["Value"]) == []
    assert parameter["Properties"]["Name"] == {"Fn::Sub": "/${AWS::StackName}/provider-key-names"}
    for name in ("ModelsFunction", "StatsFunction"):
        assert not [g for g in grants(cfn, name) if g[0].startswith("secretsmanager:")], name


def test_outputs(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    assert set(outputs) >= {
        "BaseUrl",
        "KeysTableName",
        "UsageTableName",
        "ProviderSecretArn",
        "ProviderKeyNamesParameter",  # gateway-admin set-provider-key finds both through these
    }
    base_url = outputs["BaseUrl"]["Value"]
    assert base_url.startswith("https://${GatewayApi}.execute-api.${AWS::Region}.")
    assert base_url.endswith("/${StageName}/v1")


# --- events/: each one a request API Gateway would really send to that function ------------


EVENTS = sorted(p for p in (ROOT / "events").glob("*.json") if "httpMethod" in json.loads(p.read_text()))
STREAM_EVENT = ROOT / "events" / "tally-batch.json"  # the one event that is not API Gateway's


def test_the_stream_event_is_one_the_tally_function_is_sent(template: dict[str, Any]) -> None:
    """A batch of the usage table's stream as TallyFunction's filter passes it (template.yaml): new records
    with a tally, in DynamoDB's typed JSON."""
    (source,) = template["Resources"]["TallyFunction"]["Properties"]["Events"].values()
    assert source["Type"] == "DynamoDB" and source["Properties"]["StartingPosition"] == "TRIM_HORIZON"
    (pattern,) = (json.loads(f["Pattern"]) for f in source["Properties"]["FilterCriteria"]["Filters"])
    (record,) = json.loads(STREAM_EVENT.read_text())["Records"]
    assert record["eventSource"] == "aws:dynamodb" and record["eventName"] in pattern["eventName"]
    image = record["dynamodb"]["NewImage"]
    assert pattern["dynamodb"]["NewImage"]["tally"]["M"]["day"]["S"] == [{"exists": True}]
    assert "S" in image["tally"]["M"]["day"]


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


def test_the_translated_template_keeps_the_deploy_guards(translated: dict[str, Any]) -> None:
    """What CloudFormation receives: the region rule, the timeout cap and the catalog's Bedrock permissions."""
    (assertion,) = translated["Rules"]["SupportedRegion"]["Assertions"]
    regions, region = assertion["Assert"]["Fn::Contains"]
    assert region == {"Ref": "AWS::Region"} and "me-south-1" not in regions and "us-east-1" in regions
    assert translated["Parameters"]["UpstreamTimeoutSeconds"]["MaxValue"] <= 290
    policies = translated["Resources"]["ChatFunctionRole"]["Properties"]["Policies"]
    text = json.dumps(policies)
    for arn in bedrock_resources():
        assert json.dumps(arn)[1:-1] in text, arn
