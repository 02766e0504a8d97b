"""End-to-end fixtures: moto's DynamoDB server, a fake upstream provider and the gateway, all real
servers on 127.0.0.1, with the official `openai` SDK as the client.

The servers start once per session, on first use. The gateway reads its configuration from
the environment (and caches it), so the environment it needs is applied, and the gateway's
caches cleared, only while an end-to-end module runs (`e2e_env`): unit tests in the same
session (mock_aws, monkeypatched settings) neither see these variables nor inherit caches
built from them, and cannot leave theirs behind for the end-to-end tests.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import socket
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from fake_upstream import UPSTREAM_TIMEOUT, FakeUpstream, ServerThread
from lambda_builds import builds, python312  # noqa: F401  (session fixtures: one sam build for the suite)

from gateway.caches import reset_caches
from gateway.local.dynamodb import canonical_numbers

canonical_numbers()  # mock_aws in unit tests runs the same moto backend as the emulator

# Gateway models that map onto the fake upstream's behaviours (see tests/fake_upstream.py).
FAKE_BEHAVIOURS = (
    "ok",
    "slow",
    "drip",
    "long",
    "error-500",
    "error-429",
    "error-400",
    "hang",
    "cut",
    "stall",
    "error-mid",
    "no-usage",
    "no-done",
    "odd-finish",
    "tools",
    "not-json",
    "garbage",
    "bad-usage",
    "cached",
    "reasoning",
)
# Models with two offerings whose first provider fails (with this behaviour) before the first byte.
FALLBACKS = {
    "fake-fallback": "error-500",
    "fake-fallback-429": "error-429",
    "fake-fallback-timeout": "hang",
    "fake-no-fallback-400": "error-400",
}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _model(model_id: str, *offerings: tuple[str, str], **fields: Any) -> dict[str, Any]:
    return {
        "id": model_id,
        "owned_by": "fake-lab",
        "created": 1767225600,
        "pricing": {"input": "1", "output": "2"},
        "offerings": [{"provider": p, "model": m} for p, m in offerings],
        "supports_tools": True,
        **fields,
    }


def fake_catalog(unreachable_url: str) -> dict[str, Any]:
    """The extra catalog: models on the fake upstream, each failing one behind a provider of its own.

    Providers cool down after failures (routing/health.py), so a failure must not make another
    test's provider unavailable: `fake` and `fake2` only ever answer, every other model has a
    provider to itself, and `reset_provider_health` forgets all of their state before each test.
    """

    def on_fake(name: str, env: str = "FAKE_BASE_URL") -> dict[str, Any]:
        return {"name": name, "protocol": "openai", "base_url_env": env, "key_required": False}

    providers = {"fake": on_fake("Fake upstream"), "fake2": on_fake("Fake upstream (second)", "FAKE2_BASE_URL")}
    models = [
        _model(
            "fake-ok",
            ("fake", "ok"),
            ("fake2", "ok"),
            context_length=65536,
            max_output_tokens=2048,
            pricing={"input": "0.50", "output": "1.50"},
            aliases=["fake-alias", "fake/ok"],
            display_name="Fake OK",
            input_modalities=["text", "image"],
        )
    ]
    models[0]["offerings"][1]["pricing"] = {"input": "0.40", "output": "1.20"}
    for behaviour in FAKE_BEHAVIOURS:
        if behaviour != "ok":
            providers[f"fake-{behaviour}"] = on_fake(f"Fake upstream ({behaviour})")
            models.append(_model(f"fake-{behaviour}", (f"fake-{behaviour}", behaviour)))
    cached = next(m for m in models if m["id"] == "fake-cached")  # cache reads at a tenth, writes at 1.25x
    cached["pricing"] = {"input": "1", "output": "2", "cache_read": "0.1", "cache_write": "1.25"}
    # Two offerings: the first fails before the first byte, the second (fake2) answers.
    for model_id, first in FALLBACKS.items():
        providers[model_id] = on_fake(f"Fake upstream ({model_id})")
        models.append(_model(model_id, (model_id, first), ("fake2", "ok")))
    unreachable = {"name": "Nothing listening", "base_url": unreachable_url, "key_required": False}
    providers["fake-unreachable"] = unreachable
    providers["fake-fallback-unreachable"] = dict(unreachable)
    models.append(_model("fake-unreachable", ("fake-unreachable", "ok")))
    models.append(_model("fake-fallback-unreachable", ("fake-fallback-unreachable", "ok"), ("fake2", "ok")))
    providers["fake-offline"] = on_fake("Not configured", "FAKE_OFFLINE_BASE_URL_NEVER_SET")
    models.append(_model("fake-offline", ("fake-offline", "ok")))
    return {"providers": providers, "models": models}


def reset_provider_health(provider_ids: Iterable[str], everything: bool = False) -> None:
    """Forget the shared health (failures, cooldowns, windows) of these providers, stored and cached.

    The gateway runs in this process, so its cache of provider states shows every state it wrote:
    only those items are deleted, unless `everything` (when the cache may have been cleared).
    """
    try:
        health = importlib.import_module("gateway.routing.health")
    except ModuleNotFoundError:  # a gateway without shared provider health
        return
    from gateway.config import settings
    from gateway.storage import dynamo, schema

    ids = [pid for pid in provider_ids if everything or health.state(pid)]
    deletes = [{"DeleteRequest": {"Key": schema.provider_key(pid)}} for pid in ids]
    for start in range(0, len(deletes), 25):
        dynamo.client().batch_write_item(RequestItems={settings().usage_table: deletes[start : start + 25]})
    health.forget()


@contextlib.contextmanager
def applied(env: dict[str, str]) -> Iterator[None]:
    """Set `env` (and reset the gateway's caches) for the duration; restore what was there after."""
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    reset_caches()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        reset_caches()


@dataclass
class Stack:
    env: dict[str, str]
    fake: FakeUpstream
    gateway: ServerThread
    dynamo: Any
    providers: tuple[str, ...]  # the extra catalog's providers

    @property
    def base_url(self) -> str:
        return f"{self.gateway.url}/v1"


@pytest.fixture(scope="session")
def e2e_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """moto's DynamoDB, the fake upstream and the gateway, each a real server on 127.0.0.1."""
    from gateway.local import dynamodb

    fake = FakeUpstream().start()
    before = dict(os.environ)
    try:
        local = dynamodb.start(0)  # sets the endpoint, fake credentials and table names
        env = {k: v for k, v in os.environ.items() if before.get(k) != v}
    finally:
        os.environ.clear()
        os.environ.update(before)
    catalog_path = Path(tmp_path_factory.mktemp("catalog")) / "fake-providers.json"
    extra = fake_catalog(f"http://127.0.0.1:{_closed_port()}/v1")
    catalog_path.write_text(json.dumps(extra, indent=1))
    env.update(
        {
            "FAKE_BASE_URL": f"{fake.url}/v1",
            "FAKE2_BASE_URL": f"{fake.url}/second/v1",
            "GATEWAY_CATALOG_EXTRA": str(catalog_path),
            "UPSTREAM_TIMEOUT_SECONDS": str(UPSTREAM_TIMEOUT),
            "UPSTREAM_CONNECT_TIMEOUT_SECONDS": "1",
            "KEY_CACHE_SECONDS": "0",
            "BUILTIN_TOKEN_DELAY": "0",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
    )
    gateway = None
    try:
        with applied(env):
            from gateway.api.app import local_app

            gateway = ServerThread(local_app(), name="gateway").start()
        yield Stack(env=env, fake=fake, gateway=gateway, dynamo=local, providers=tuple(extra["providers"]))
    finally:
        if gateway is not None:
            gateway.stop()
        fake.stop()
        local.stop()


def ensure_tables(stack: Stack) -> None:
    """Recreate the emulator's tables if they are gone.

    moto keeps one store per process, shared by its server and by `mock_aws`: a unit test that
    starts `mock_aws()` with its default reset empties the end-to-end emulator too.
    """
    from gateway.local.dynamodb import TEMPLATE
    from gateway.storage import dynamo
    from gateway.storage.tables import TABLE_ENV, create_all

    client = dynamo.client()
    names = {logical: stack.dynamo.tables[env] for logical, env in TABLE_ENV.items()}
    existing = set(client.list_tables()["TableNames"])
    if set(names.values()) <= existing:
        return
    for name in set(names.values()) & existing:
        client.delete_table(TableName=name)
    create_all(client, TEMPLATE, names)


@pytest.fixture(scope="module")
def e2e_env(e2e_stack: Stack) -> Iterator[Stack]:
    """The gateway's environment, applied while one end-to-end module runs."""
    with applied(e2e_stack.env):
        ensure_tables(e2e_stack)
        reset_provider_health(e2e_stack.providers, everything=True)
        yield e2e_stack


# Keys for the end-to-end tests get room enough that no limit or balance gets in a test's way;
# the tests of limits themselves pass their own values.
E2E_KEY_FIELDS: dict[str, Any] = {
    "plan": "startup",
    "rpm": 100_000,
    "tpm": 100_000_000,
    "monthly_credit": Decimal(1000),
}


def make_key(owner: str = "e2e@example.com", name: str = "e2e", **fields: Any) -> tuple[str, Any]:
    """The one place tests create API keys: returns (the key itself, its ApiKey record).

    `fields` (plan, rpm, tpm, free_requests, monthly_credit, allowed_models, expires_at) replace
    the generous defaults. Needs the gateway's environment applied (the `e2e_env` fixture).
    """
    from gateway.accounts import keys

    return keys.create(owner=owner, name=name, **{**E2E_KEY_FIELDS, **fields})


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


# Fixtures that start real servers or builds, and the marker each gives a test that uses them.
MARKED_FIXTURES = {"e2e_stack": "e2e", "builds": "build", "python312": "build"}
SERVER_MODULES = ("test_discovery", "test_admin_cli", "test_handlers", "test_instances_e2e", "test_deploy_guide")
TOOL_TESTS = ("test_sam_validate_lint", "test_cfn_lint_has_no_findings")  # run SAM CLI and cfn-lint: the build's tools


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test by what it starts, so `make test-fast` (`-m "not e2e and not build and not browser"`)
    runs the unit and in-process tests alone."""
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for fixture, marker in MARKED_FIXTURES.items():
            if fixture in used:
                item.add_marker(marker)
        module = item.module.__name__ if item.module else ""
        if module in SERVER_MODULES:
            item.add_marker("e2e")
        if item.name in TOOL_TESTS:
            item.add_marker("build")
        if module == "test_playground_browser":
            item.add_marker("browser")
