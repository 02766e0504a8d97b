"""`sam build` for real, without containers, and the built artifacts run the way Lambda runs them.

What `sam local invoke FUNCTION -e events/FILE.json` would check, without Docker:

- The template is built twice per session, concurrently, into temporary directories (the session
  fixture `builds` of tests/support/builds.py, whose host build tests/lambda/test_invoke.py also runs; the
  repository keeps no .aws-sam): as it is (arm64, what deploys) and with arm64 replaced by this
  machine's architecture in Architectures, CompatibleArchitectures and BuildArchitecture
  (lambdas/builds.py, `template_for`). The arm64 layer holds aarch64 wheels (orjson, pydantic_core,
  ...) that cannot be imported on x86_64, so the arm64 build is checked for what it contains, and the
  host build, which must hold the very same Python files, is the one that runs.
- Each Mangum function's built `app.handler` is called with every event in events/ that targets it
  (by the template's Api events: method and resource path), and the sweeper with a scheduled
  event, in a python3.12 process (the Lambda runtime's version) whose sys.path holds only the built
  function, the built layer's python/, boto3 and its dependencies (which the runtime provides),
  and, last, moto with its dependencies for the AWS mock. The two tables come from template.yaml
  (gateway.storage.tables.create_all, the built copy), the provider secret and the parameter listing
  its key names exist and are empty, and events carrying the key placeholder get a real key
  (gateway.accounts.keys.create). A module the handler imports from moto's dependencies, or a
  gateway package that is not the built one, fails.
- The chat function's built run.sh is started as the Lambda Web Adapter starts it (PORT, python3.12,
  the built layer where /opt/python would be), against moto's DynamoDB server, and the chat events
  are replayed as the adapter forwards them (tests/support/lambdas.py's ChatServer).

It takes one to three minutes (the builds download wheels). Without python3.12 or SAM CLI the
tests skip, except under CI=true, where they fail.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from lambdas import builds as lambda_build
from lambdas import runtime as lambda_runtime
from lambdas.invoke import KEY_PLACEHOLDER
from tests.support.lambdas import (
    FAKE_AWS,
    TABLES,
    TEMPLATE,
    ChatServer,
    check_api_response,
    check_handler_answer,
    create_key_on,
    event,
    event_text,
    events,
    targets,
)
from tests.support.moto import moto_server

SECRET_NAME = "build-test-provider-keys"  # the provider secret, by name (Secrets Manager takes either)
KEY_NAMES_PARAMETER = "/build-test/provider-key-names"  # which keys it holds, for the models and stats functions


# --- the builds: python312 and builds are session fixtures (tests/support/builds.py) ---------------


@pytest.fixture(scope="module")
def host_functions(builds: dict[str, Path]) -> dict[str, Any]:
    refs = {
        "KeysTable": TABLES["KeysTable"],
        "UsageTable": TABLES["UsageTable"],
        "ProviderSecret": SECRET_NAME,
        "ProviderKeyNames": KEY_NAMES_PARAMETER,
    }
    return lambda_build.built_functions(builds["host"], refs)


def layer_python(build_dir: Path) -> Path:
    (layer,) = {d for fn in lambda_build.built_functions(build_dir).values() for d in fn.layer_dirs}
    return layer / "python"


def test_arm64_build_holds_arm64_binaries(builds: dict[str, Path]) -> None:
    """What deploys: every compiled module is aarch64, and every platform wheel is tagged for it."""
    layer = layer_python(builds["arm64"])
    binaries = sorted(layer.rglob("*.so"))
    assert binaries, "the layer's dependencies include compiled ones (orjson, pydantic_core)"
    wrong = {str(p.relative_to(layer)): lambda_runtime.elf_architecture(p) for p in binaries}
    assert {p: arch for p, arch in wrong.items() if arch != "arm64"} == {}
    assert all("aarch64" in p.name for p in binaries), [p.name for p in binaries]
    for dist, tags in lambda_runtime.wheel_tags(layer).items():
        if not all(tag.endswith("-none-any") for tag in tags):
            assert all("aarch64" in tag for tag in tags), f"{dist}: {tags}"


def test_builds_hold_the_package_and_the_entry_points(builds: dict[str, Path]) -> None:
    for build_dir in builds.values():
        layer = layer_python(build_dir)
        for data in ("gateway/__init__.py", "gateway/catalog.json", "gateway/plans.json", "gateway/playground"):
            assert (layer / data).exists(), f"{data} missing from the built layer"
        for tool in ("gateway/local", "gateway/admin"):
            assert not (layer / tool).exists(), f"{tool} is a development tool: it must not ship in the layer"
        for fn in lambda_build.built_functions(build_dir).values():
            entry = fn.code_dir / (fn.handler if fn.web_adapter else f"{fn.module}.py")
            assert entry.is_file(), f"{fn.name}: {entry} missing"
            if fn.web_adapter:
                assert os.access(entry, os.X_OK), f"{entry} must stay executable in the build"


def test_host_build_is_the_arm64_build_for_another_cpu(builds: dict[str, Path]) -> None:
    """The same files but the compiled ones, so the host build standing in for arm64 below is fair."""

    def files(build_dir: Path) -> set[str]:
        return {
            str(p.relative_to(build_dir))
            for p in build_dir.rglob("*")
            if p.is_file()
            and p.suffix != ".so"
            and p.name != "template.yaml"
            and "__pycache__" not in p.parts
            and not any(part.endswith((".dist-info", ".data")) for part in p.parts)
        }

    arm64, host = files(builds["arm64"]), files(builds["host"])
    assert arm64 == host, f"only in arm64: {sorted(arm64 - host)[:20]}, only in host: {sorted(host - arm64)[:20]}"
    host_arch = lambda_build.host_architecture()
    for binary in layer_python(builds["host"]).rglob("*.so"):
        assert lambda_runtime.elf_architecture(binary) == host_arch, binary


def test_every_event_targets_a_function() -> None:
    found = {name for _, name in targets()}
    assert set(events()) <= found, f"events no function of template.yaml serves: {sorted(set(events()) - found)}"
    counts: dict[str, int] = {}
    for _, name in targets():
        counts[name] = counts.get(name, 0) + 1
    assert all(count == 1 for count in counts.values()), counts


# --- the Mangum functions, the sweeper and the tally, under mock_aws and moto's DynamoDB server -------------

HARNESS = r"""
import importlib, json, os, sys
from pathlib import Path
from types import SimpleNamespace

spec = json.loads(Path(sys.argv[1]).read_text())
import boto3
from moto import mock_aws  # before the handler: moto hooks every botocore client made after this

mock = mock_aws()
mock.start()
secrets = boto3.client("secretsmanager", region_name=os.environ["AWS_REGION"])
secrets.create_secret(Name=spec["secret"], SecretString="{}")
ssm = boto3.client("ssm", region_name=os.environ["AWS_REGION"])
ssm.put_parameter(Name=spec["key_names"], Value="[]", Type="String")  # as the template creates both
from gateway.storage import tables
from gateway.accounts import keys

# DynamoDB is the test session's moto server, which the request path's own client reaches over HTTP.
dynamodb = boto3.client("dynamodb", region_name=os.environ["AWS_REGION"],
                        endpoint_url=os.environ["AWS_ENDPOINT_URL_DYNAMODB"])
for name in spec["tables"].values():
    try:
        dynamodb.delete_table(TableName=name)
    except dynamodb.exceptions.ResourceNotFoundException:
        pass
tables.create_all(dynamodb, Path(spec["template"]), spec["tables"])
key, _ = keys.create(owner="ops@example.com", name="build test")
for text in spec["events"].values():  # a stream event's items exist, as settlement wrote them
    for record in json.loads(text).get("Records", []):
        dynamodb.put_item(TableName=spec["tables"]["UsageTable"], Item=record["dynamodb"]["NewImage"])

before = set(sys.modules)
module = importlib.import_module(spec["module"])
harness_only = [
    name for name in sorted(set(sys.modules) - before)
    if str(getattr(sys.modules[name], "__file__", None) or "").startswith(spec["harness_site"])
]
context = SimpleNamespace(
    function_name=spec["function"], function_version="$LATEST", memory_limit_in_mb=512,
    invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:" + spec["function"],
    aws_request_id="5d6f6a1e-0c2b-4d8e-9f0a-1b2c3d4e5f60", log_group_name="/aws/lambda/" + spec["function"],
    log_stream_name="2025/01/01/[$LATEST]0123456789abcdef", get_remaining_time_in_millis=lambda: 10_000,
)
results = {}
for name, text in spec["events"].items():
    results[name] = module.handler(json.loads(text.replace(spec["placeholder"], key)), context)
for name in spec["tables"].values():
    dynamodb.delete_table(TableName=name)
mock.stop()
print(spec["mark"] + json.dumps({
    "results": results, "harness_only": harness_only, "key": key,
    "module_file": module.__file__, "gateway_file": sys.modules["gateway"].__file__,
}))
"""
MARK = "BUILD-TEST-RESULT "


@pytest.fixture(scope="module")
def sites(python312: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the runtime's boto3 and its dependencies, moto and the rest of its dependencies), at this venv's versions.

    Pure-Python distributions are linked from this venv; compiled ones (cffi, for moto's
    cryptography) are installed for python3.12 by pip. The built layer comes before both on
    sys.path, so its own copies of shared dependencies win, as /opt/python wins in Lambda.
    """
    base = tmp_path_factory.mktemp("sites")
    runtime = lambda_runtime.site_dir(
        base / "runtime", lambda_runtime.RUNTIME_PROVIDED, copy=False, python312=python312
    )
    harness = lambda_runtime.site_dir(
        base / "harness", ["moto[dynamodb]", "pyyaml"], copy=False, exclude=["boto3"], python312=python312
    )
    return runtime, harness


@pytest.fixture(scope="module")
def invocations(
    python312: str,
    host_functions: dict[str, Any],
    sites: tuple[Path, Path],
    tmp_path_factory: pytest.TempPathFactory,
    dynamodb_server: tuple[Any, dict[str, str]],
) -> dict[str, dict[str, Any]]:
    """{function: the harness's report}, for every function with a Python handler, one process each."""
    work = tmp_path_factory.mktemp("invoke")
    runtime, harness = sites
    all_events = {name: event_text(name) for name in [*events(), "scheduled"]}
    reports = {}
    for fn in host_functions.values():
        if fn.web_adapter:
            continue
        names = [name for function, name in targets() if function == fn.name]
        spec = {
            "function": fn.name,
            "module": fn.module,
            "template": str(TEMPLATE),
            "tables": TABLES,
            "secret": SECRET_NAME,
            "key_names": KEY_NAMES_PARAMETER,
            "placeholder": KEY_PLACEHOLDER,
            "harness_site": str(harness),
            "mark": MARK,
            "events": {name: all_events[name] for name in names},
        }
        spec_file = work / f"{fn.name}.json"
        spec_file.write_text(json.dumps(spec))
        path = os.pathsep.join(map(str, [*fn.python_path, runtime, harness]))
        env = lambda_build.lambda_environment(
            fn,
            {
                "PYTHONPATH": path,
                "AWS_SAM_LOCAL": "true",  # as `sam local invoke` sets it (Powertools' Tracer stays off)
                "PYTHONPYCACHEPREFIX": str(work / "pycache"),  # nothing written into the build or the venv
                "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_server[1]["AWS_ENDPOINT_URL_DYNAMODB"],
            },
        )
        env.pop("PYTHONDONTWRITEBYTECODE")  # bytecode may go to the prefix above: three processes import moto
        result = subprocess.run(
            [python312, "-S", "-c", HARNESS, str(spec_file)],
            cwd=fn.code_dir,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        lines = [line for line in result.stdout.splitlines() if line.startswith(MARK)]
        assert result.returncode == 0 and lines, f"{fn.name} exited {result.returncode}:\n{result.stderr[-6000:]}"
        reports[fn.name] = {**json.loads(lines[-1][len(MARK) :]), "code_dir": str(fn.code_dir), "fn": fn}
    return reports


def test_handlers_import_only_the_build_and_the_runtime(invocations: dict[str, dict[str, Any]]) -> None:
    for name, report in invocations.items():
        assert report["module_file"].startswith(report["code_dir"]), (name, report["module_file"])
        layer = str(report["fn"].layer_dirs[0])
        assert report["gateway_file"].startswith(layer), f"{name} imported gateway from {report['gateway_file']}"
        assert report["harness_only"] == [], f"{name} imports what only the test harness provides"


@pytest.mark.parametrize(
    ("function", "event_name"),
    [pair for pair in targets() if pair[0] != "ChatFunction"],
    ids=lambda value: value,
)
def test_python_handler_answers_event(invocations: dict[str, dict[str, Any]], function: str, event_name: str) -> None:
    report = invocations[function]
    check_handler_answer(event_name, event(event_name), report["results"][event_name], report["key"])


# --- the chat function: run.sh behind the Web Adapter ------------------------------------------


@pytest.fixture(scope="module")
def chat(
    python312: str, host_functions: dict[str, Any], sites: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ChatServer]:
    (fn,) = [fn for fn in host_functions.values() if fn.web_adapter]
    workdir = tmp_path_factory.mktemp("chat-build")
    runtime, _ = sites
    with contextlib.ExitStack() as stack:
        endpoint = stack.enter_context(moto_server(workdir / "moto.log"))
        key = create_key_on(endpoint)
        boto3.client(
            "secretsmanager", endpoint_url=endpoint, region_name=lambda_build.REGION, **_lower(FAKE_AWS)
        ).create_secret(Name=SECRET_NAME, SecretString="{}")
        env = {
            "AWS_ENDPOINT_URL_DYNAMODB": endpoint,
            "AWS_ENDPOINT_URL_SECRETS_MANAGER": endpoint,
            "BUILTIN_TOKEN_DELAY": "0",
        }
        process, url, log = stack.enter_context(lambda_runtime.web_adapter_app(fn, python312, runtime, workdir, env))
        lambda_runtime.wait_ready(process, url, log)
        yield ChatServer(url=url, key=key, log=log)


def _lower(credentials: dict[str, str]) -> dict[str, str]:
    names = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}
    return {name.lower(): value for name, value in credentials.items() if name in names}


@pytest.mark.parametrize(
    "event_name", [name for function, name in targets() if function == "ChatFunction"], ids=lambda value: value
)
def test_chat_function_answers_event(chat: ChatServer, event_name: str) -> None:
    sent = event(event_name, chat.key)
    started = time.monotonic()
    response = chat.send(sent)
    check_api_response(event_name, sent, response.status_code, dict(response.headers), response.text, chat.logs())
    assert time.monotonic() - started < 20
