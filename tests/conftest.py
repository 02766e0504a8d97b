"""End-to-end fixtures: moto's DynamoDB server, a fake upstream provider and the gateway, all real
servers on 127.0.0.1, with the official `openai` SDK as the client.

The servers start once per session, on first use. The gateway reads its configuration from
the environment (and caches it), so the environment it needs is applied, and the gateway's
caches cleared, only while an end-to-end module runs (`e2e_env`): unit tests in the same
session (mock_aws, monkeypatched settings) neither see these variables nor inherit caches
built from them, and cannot leave theirs behind for the end-to-end tests.
"""

from __future__ import annotations

import json
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from moto import mock_aws

from gateway.local.dynamodb import canonical_numbers
from tests.support.admin import FAKE_AWS_CREDENTIALS, REGION
from tests.support.builds import builds, python312  # noqa: F401  (session fixtures: one sam build for the suite)
from tests.support.catalogs import fake_catalog
from tests.support.fake_upstream import UPSTREAM_TIMEOUT, FakeUpstream
from tests.support.keys import make_key
from tests.support.moto import local_dynamodb
from tests.support.servers import ServerThread, free_port
from tests.support.stack import Stack, applied, ensure_tables, reset_provider_health

STORE_RETRY = 1.5  # the gateway's STORE_RETRY_SECONDS in the e2e tests: a store that stays away is given up on quickly
canonical_numbers()  # mock_aws in unit tests runs the same moto backend as the emulator


@pytest.fixture(scope="session")
def dynamodb_server() -> Iterator[tuple[Any, dict[str, str]]]:
    """moto's DynamoDB server, one for the session, in this process's threads: the emulator gateway-local runs,
    with the template's tables, and the environment that reaches it. Tests of the request path reach it as
    the gateway reaches DynamoDB (storage/client.py), over HTTP; tests with tables of their own make them on it
    (tests/support/moto.py `own_tables`), and delete them after."""
    local, env = local_dynamodb()
    try:
        yield local, env
    finally:
        local.stop()


@pytest.fixture(scope="session")
def e2e_stack(tmp_path_factory: pytest.TempPathFactory, dynamodb_server: tuple[Any, dict[str, str]]) -> Iterator[Stack]:
    """moto's DynamoDB, the fake upstream and the gateway, each a real server on 127.0.0.1."""
    fake = FakeUpstream().start()
    local, env = dynamodb_server[0], dict(dynamodb_server[1])
    catalog_path = Path(tmp_path_factory.mktemp("catalog")) / "fake-providers.json"
    extra = fake_catalog(f"http://127.0.0.1:{free_port()}/v1")  # nothing listens there
    catalog_path.write_text(json.dumps(extra, indent=1))
    env.update(
        {
            "FAKE_BASE_URL": f"{fake.url}/v1",
            "FAKE2_BASE_URL": f"{fake.url}/second/v1",
            "GATEWAY_CATALOG_EXTRA": str(catalog_path),
            "UPSTREAM_TIMEOUT_SECONDS": str(UPSTREAM_TIMEOUT),
            "UPSTREAM_CONNECT_TIMEOUT_SECONDS": "1",
            "STORE_RETRY_SECONDS": str(STORE_RETRY),
            "KEY_CACHE_SECONDS": "0",
            "BUILTIN_TOKEN_DELAY": "0",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
    )
    gateway = None
    try:
        with applied(env):
            from gateway.local.app import local_app

            gateway = ServerThread(local_app(), name="gateway").start()
        yield Stack(env=env, fake=fake, gateway=gateway, dynamo=local, providers=tuple(extra["providers"]))
    finally:
        if gateway is not None:
            gateway.stop()
        fake.stop()


@pytest.fixture(scope="module")
def e2e_env(e2e_stack: Stack) -> Iterator[Stack]:
    """The gateway's environment, applied while one end-to-end module runs."""
    with applied(e2e_stack.env):
        ensure_tables(e2e_stack)
        reset_provider_health(e2e_stack.providers, everything=True)
        yield e2e_stack


@pytest.fixture(name="make_key")
def make_key_fixture(e2e_env: Stack) -> Callable[..., tuple[str, Any]]:
    return make_key


@pytest.fixture(scope="module")
def api_key(e2e_env: Stack) -> str:
    return make_key(name="e2e module key")[0]


@pytest.fixture
def e2e(e2e_env: Stack) -> Stack:
    """The stack, with every fake provider healthy again (no test inherits another's cooldowns)."""
    reset_provider_health(e2e_env.providers)
    return e2e_env


@pytest.fixture
def gateway_url(e2e: Stack) -> str:
    """The gateway's base URL, ending in /v1."""
    return e2e.base_url


@pytest.fixture
def fake(e2e: Stack) -> FakeUpstream:
    """The fake upstream provider, with every request it received."""
    return e2e.fake


@pytest.fixture
def deployed(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A stack as `sam deploy` leaves it, under mock_aws: the empty secret, the `[]` parameter, the outputs.

    moto's data is shared with the end-to-end tests' server, so the mock starts without a reset
    and removes only what it made (as tests/lambda/test_handlers.py's `aws` fixture explains).
    For test_admin_cli and test_deploy_guide.
    """
    # The command sets some of these in os.environ (from the stack's outputs); each is put back as it
    # was after the test, unset included (delenv alone records nothing for a variable that is unset).
    for name in (
        "PROVIDER_SECRET_ID",
        "PROVIDER_KEY_NAMES_PARAMETER",
        "KEYS_TABLE",
        "USAGE_TABLE",
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_DYNAMODB",
        "AWS_ENDPOINT_URL_SECRETS_MANAGER",
        "AWS_ENDPOINT_URL_SSM",
    ):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    for name, value in {**FAKE_AWS_CREDENTIALS, "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    mock = mock_aws()
    mock.start(reset=False)
    secrets = boto3.client("secretsmanager", region_name=REGION)
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    secret_arn = secrets.create_secret(Name="admin-test-provider-keys", SecretString="{}")["ARN"]
    template = {
        "Resources": {
            "ProviderKeyNames": {
                "Type": "AWS::SSM::Parameter",
                "Properties": {"Name": "/admin-test/provider-key-names", "Type": "String", "Value": "[]"},
            }
        },
        "Outputs": {
            "KeysTableName": {"Value": "admin-test-keys"},
            "UsageTableName": {"Value": "admin-test-usage"},
            "ProviderSecretArn": {"Value": secret_arn},
            "ProviderKeyNamesParameter": {"Value": {"Ref": "ProviderKeyNames"}},
        },
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cloudformation.create_stack(StackName="admin-test", TemplateBody=json.dumps(template))
    try:
        yield {"stack": "admin-test", "secret": secret_arn, "parameter": "/admin-test/provider-key-names"}
    finally:
        secrets.delete_secret(SecretId=secret_arn, ForceDeleteWithoutRecovery=True)
        cloudformation.delete_stack(StackName="admin-test")  # and its parameter
        mock.stop(remove_data=False)


# Clients are made once per session: creating one builds an SSL context (tens of milliseconds of
# CPU each), which made up half of the suite's time when every test made its own.


@pytest.fixture(scope="session")
def _sdk_session(e2e_stack: Stack) -> Iterator[Any]:
    import openai

    with openai.OpenAI(base_url=e2e_stack.base_url, api_key="sk-none", max_retries=0, timeout=15) as sdk:
        yield sdk


@pytest.fixture(scope="session")
def _raw_session(e2e_stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=e2e_stack.base_url, timeout=15, trust_env=False) as raw:
        yield raw


@pytest.fixture(scope="session")
def _anon_session(e2e_stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=e2e_stack.base_url, timeout=15, trust_env=False) as anon:
        yield anon


@pytest.fixture(scope="module")
def _sdk(e2e_env: Stack, api_key: str, _sdk_session: Any) -> Any:
    return _sdk_session.with_options(api_key=api_key)


@pytest.fixture(scope="module")
def _raw(e2e_env: Stack, api_key: str, _raw_session: httpx.Client) -> httpx.Client:
    _raw_session.headers["authorization"] = f"Bearer {api_key}"
    return _raw_session


@pytest.fixture(scope="module")
def _anon(e2e_env: Stack, _anon_session: httpx.Client) -> httpx.Client:
    return _anon_session


@pytest.fixture
def client(e2e: Stack, _sdk: Any) -> Any:
    """The official openai SDK, with the module's key and no retries."""
    return _sdk


@pytest.fixture
def client_for(e2e: Stack, _sdk: Any) -> Callable[[str], Any]:
    """An openai SDK client for another key (sharing the module's connection pool)."""
    return lambda key: _sdk.with_options(api_key=key)


@pytest.fixture
def http(e2e: Stack, _raw: httpx.Client) -> httpx.Client:
    """A raw HTTP client with the module's key set, for status codes, headers and raw SSE bytes."""
    return _raw


@pytest.fixture
def anon_http(e2e: Stack, _anon: httpx.Client) -> httpx.Client:
    """A raw HTTP client without a key: tests send their own Authorization header, or none."""
    return _anon


@pytest.fixture
def marker() -> str:
    """A unique word to put in a prompt, so the fake upstream's record of this test can be found."""
    return f"m{uuid.uuid4().hex[:12]}"


# Each test's tier is the folder it lives in (tests/unit, tests/e2e, tests/lambda, tests/docs, tests/browser,
# tests/agents), and its marker is that folder's name: `-m "not lambda"` leaves the builds out, say.
TIERS = ("unit", "e2e", "lambda", "docs", "browser", "agents")
HERE = Path(__file__).resolve().parent
# What a unit test may not use: these start servers or builds (make test-fast runs tests/unit alone).
NOT_IN_UNIT = ("e2e_stack", "builds", "python312")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with its tier, the folder under tests/ that holds it. A module outside the tiers'
    folders still runs (`make test` runs it in front, with unit and e2e) and is named in a warning."""
    strays = set()
    for item in items:
        parts = Path(str(item.path)).resolve().relative_to(HERE).parts
        tier = parts[0] if len(parts) > 1 else None
        if tier not in TIERS:
            strays.add("/".join(parts))
            continue
        item.add_marker(tier)
        used = set(getattr(item, "fixturenames", ())) & set(NOT_IN_UNIT)
        if tier == "unit" and used:
            started = ", ".join(sorted(used))
            raise pytest.UsageError(f"{item.nodeid} starts servers or builds ({started}): not a unit test")
    if strays:
        config.issue_config_time_warning(
            pytest.PytestWarning(f"tests outside the tiers' folders {TIERS}: {', '.join(sorted(strays))}"), stacklevel=2
        )
