"""SnapStart: priming needs no network, and the hooks renew in each restored copy what copies must not share.

The Mangum functions register with Lambda's Python runtime (`snapshot_restore_py`, run here as the
runtime runs it: before-snapshot hooks last-registered first, after-restore hooks in order); the
chat function answers the Lambda Web Adapter's hook requests on a real uvicorn server.
"""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import snapshot_restore_py as runtime

from gateway.api import app, priming, snapstart
from gateway.api.lambda_handler import mangum_handler
from gateway.caches import reset_caches
from gateway.providers import bedrock, http
from gateway.storage import dynamo
from tests.support.servers import ServerThread

REGION = "us-east-1"


@pytest.fixture(autouse=True)
def aws_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_LAMBDA_INITIALIZATION_TYPE", raising=False)
    reset_caches()
    yield
    reset_caches()


@pytest.fixture
def runtime_registry(monkeypatch: pytest.MonkeyPatch) -> tuple[list[Any], list[Any]]:
    """Empty hook registries of Lambda's runtime module, as a fresh execution environment has."""
    before: list[Any] = []
    after: list[Any] = []
    monkeypatch.setattr(runtime, "_before_snapshot_registry", before)
    monkeypatch.setattr(runtime, "_after_restore_registry", after)
    return before, after


class Shared:
    """What one environment holds that no restored copy may share: its pools, clients and random state."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.dynamodb = dynamo.client()
        self.bedrock = bedrock.shared_client("us-west-2")
        self.http = self._http()
        random.seed(7)
        self.draws = [random.random() for _ in range(3)]
        random.seed(7)  # as a snapshot would leave it: every copy would draw these same numbers

    def _http(self) -> httpx.AsyncClient:
        async def pool() -> httpx.AsyncClient:
            return http.http_client()

        return self.loop.run_until_complete(pool())

    def assert_renewed(self) -> None:
        assert dynamo.client() is not self.dynamodb
        assert bedrock.shared_client("us-west-2") is not self.bedrock
        assert self._http() is not self.http
        assert [random.random() for _ in range(3)] != self.draws

    def assert_kept(self) -> None:
        assert dynamo.client() is self.dynamodb
        assert self._http() is self.http


@pytest.fixture
def shared() -> Iterator[Shared]:
    loop = asyncio.new_event_loop()
    try:
        yield Shared(loop)
    finally:
        loop.close()


def test_renew_replaces_pools_clients_and_random_state(shared: Shared) -> None:
    snapstart.renew()
    shared.assert_renewed()


def test_runtime_hooks_registered_once_and_run_as_the_runtime_runs_them(
    runtime_registry: tuple[list[Any], list[Any]], shared: Shared
) -> None:
    before, after = runtime_registry
    for _ in range(2):  # however many apps a process builds
        mangum_handler(app.models_app(), "models")
    assert [entry[0] for entry in before] == [snapstart.before_snapshot]
    assert [entry[0] for entry in after] == [snapstart.renew]

    for function, args, kwargs in reversed(runtime.get_before_snapshot()):
        function(*args, **kwargs)
    shared.assert_kept()  # the snapshot keeps what init built
    for function, args, kwargs in runtime.get_after_restore():
        function(*args, **kwargs)
    shared.assert_renewed()


def test_the_web_adapters_hooks_renew_the_chat_app(monkeypatch: pytest.MonkeyPatch, shared: Shared) -> None:
    monkeypatch.setenv(snapstart.BEFORE_PATH, "/lwa/snapstart/before")
    monkeypatch.setenv(snapstart.AFTER_PATH, "/lwa/snapstart/after")
    server = ServerThread(app.chat_app(), name="chat-snapstart").start()
    try:
        before = httpx.post(server.url + "/lwa/snapstart/before", trust_env=False, timeout=10)
        assert before.status_code == 204
        shared.assert_kept()
        after = httpx.post(server.url + "/lwa/snapstart/after", trust_env=False, timeout=10)
        assert after.status_code == 204
        shared.assert_renewed()
        assert httpx.get(server.url + "/lwa/snapstart/after", trust_env=False, timeout=10).status_code == 405
    finally:
        server.stop()


def test_without_the_adapters_variables_there_are_no_hook_routes() -> None:
    served = {path for route in snapstart.hooks_router().routes for path in [getattr(route, "path", "")]}
    assert served == set()


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every outgoing connection fails and is recorded."""
    attempts: list[Any] = []

    def refuse(self: socket.socket, address: Any) -> None:
        attempts.append(address)
        raise OSError("priming must not use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


def test_priming_runs_every_function_without_a_network(no_network: list[Any]) -> None:
    models = snapstart.prime(app.models_app(), priming.MODELS)
    assert models.pop("GET /v1/models/no-such-model") == 404
    assert set(models.values()) == {200}, models
    assert set(snapstart.prime(app.stats_app(), priming.KEYLESS["stats"]).values()) == {401}
    assert set(snapstart.prime(app.chat_app(), priming.KEYLESS["chat"]).values()) == {401}
    priming.chat_paths()
    priming.stats_paths()
    assert no_network == []


@pytest.mark.parametrize(
    ("factory", "prime"),
    [(app.models_app, priming.models), (app.stats_app, priming.stats), (app.chat_app, priming.chat)],
)
def test_a_priming_failure_leaves_the_function_serving(
    monkeypatch: pytest.MonkeyPatch, factory: Callable[[], Any], prime: Callable[[Any], None]
) -> None:
    logged: list[str] = []
    monkeypatch.setattr(priming.log, "exception", lambda message, **_: logged.append(message))
    monkeypatch.setattr(snapstart, "prime", lambda *_: (_ for _ in ()).throw(RuntimeError("broken")))
    prime(factory())
    assert logged == ["priming failed"]


def test_functions_prime_only_in_the_init_lambda_snapshots(
    monkeypatch: pytest.MonkeyPatch, runtime_registry: tuple[list[Any], list[Any]]
) -> None:
    primed: list[str] = []
    mangum_handler(app.models_app(), "models", prime=lambda _: primed.append("models"))
    assert primed == []  # an on-demand init: priming would only lengthen it
    monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", "snap-start")
    mangum_handler(app.models_app(), "models", prime=lambda _: primed.append("models"))
    assert primed == ["models"]


def test_each_restored_copy_runs_what_asked_to_run_after_renewing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The chat function counts its cold start in every restored copy, not once in the snapshot."""
    ran: list[str] = []
    monkeypatch.setattr(snapstart, "_restored", [])
    snapstart.on_restore(lambda: ran.append("cold start"))
    snapstart.renew()
    snapstart.renew()
    assert ran == ["cold start", "cold start"]
