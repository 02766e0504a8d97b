"""A built function run the way Lambda runs it, without Docker: `make invoke FUNCTION=... EVENT=...`.

    make invoke FUNCTION=ModelsFunction EVENT=events/models-list.json
    make invoke FUNCTION=SweeperFunction                      # the schedule's event
    .venv/bin/python -m lambdas.invoke -f StatsFunction -e events/key-info.json -e events/stats.json

What it does:

- Builds the template with `sam build` for this machine's architecture (lambdas/builds.py: the
  template's arm64 replaced where this machine is another, into build/coldstart/ARCH/build, as
  `make coldstart` does), and reuses that build while template.yaml, functions/ and layers/gateway/
  are unchanged.
- Starts moto's server (lambdas/dynamo_server.py, in a process of its own) with the template's tables,
  secrets and SSM parameters, and an API key that takes the place of the events' placeholder key.
  Every AWS client of the function goes there (AWS_ENDPOINT_URL): nothing reaches AWS.
- A buffered function (a Python handler) runs under the Lambda Runtime Interface Emulator that ships
  inside the aws-sam-cli package (samcli/local/rapid/aws-lambda-rie-ARCH, what `sam local` runs in
  its containers): `aws-lambda-rie python -m awslambdaric app.handler`, where `python` is python3.12
  without site-packages and awslambdaric is the runtime interface client of Lambda's own Python
  images. The emulator starts the runtime on the first invoke (the cold start, its INIT lines in the
  log), which then asks its Runtime API for events, as in Lambda. sys.path holds only the built
  function, the built layer's python/ (Lambda's /opt/python), awslambdaric (installed for
  python3.12 into build/invoke/: it is the runtime's, as in Lambda's /var/runtime, never the
  layer's) and the runtime's boto3; the environment is the template's plus Lambda's own variables.
  Each event is POSTed to the emulator's invoke endpoint; several events go to one warm process.
- ChatFunction has no Python handler: in Lambda the Web Adapter layer starts its run.sh (uvicorn)
  and forwards each event to it as an HTTP request, streaming the answer. Here run.sh is started
  as the adapter starts it, and each event is replayed as the adapter forwards it.
- Where this process may create a mount namespace (root, with `unshare`), the function sees every
  file system read-only except its own /tmp (TMPDIR and HOME), as in Lambda.

The function's response goes to stdout, as JSON (for ChatFunction in API Gateway's proxy shape:
statusCode, headers, body, a stream's events in body); its logs (the emulator's START, END and
REPORT lines, Powertools' JSON) go to stderr. With Docker, `sam local invoke FUNCTION -e EVENT`
does the same in Lambda's image (README, Development).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.local.child import stop
from lambdas import builds as lambda_build
from lambdas import rie
from lambdas import runtime as lambda_runtime

ROOT = lambda_build.ROOT
EVENTS = ROOT / "events"
WORK = ROOT / "build" / "invoke"  # build/ is gitignored
KEY_PLACEHOLDER = "sk-REPLACE-with-a-key-from-gateway-admin-create-key"  # in events/*.json
SCHEDULED_EVENT = {  # what EventBridge sends the sweeper (events/ holds API Gateway events only)
    "version": "0",
    "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": "123456789012",
    "time": "2025-01-01T00:00:00Z",
    "region": lambda_build.REGION,
    "resources": ["arn:aws:events:us-east-1:123456789012:rule/llm-gateway-SweeperFunctionEvery5Minutes"],
    "detail": {},
}


@dataclass
class LocalAws:
    endpoint: str
    key: str  # an API key in the keys table, for the events' placeholder
    refs: dict[str, str]  # logical id -> what its Ref gives: table names, the secrets' ARNs, the parameters' names

    def environment(self) -> dict[str, str]:
        """Every AWS client of the function talks to moto."""
        return {"AWS_ENDPOINT_URL": self.endpoint}


def _create_template_resources(endpoint: str, template: Path) -> dict[str, str]:
    """The template's Secrets Manager secrets and SSM parameters, with their initial values, on moto."""
    import boto3

    credentials = {name.lower(): value for name, value in lambda_build.FAKE_CREDENTIALS.items()}
    session = boto3.session.Session(region_name=lambda_build.REGION, **credentials)
    parsed = lambda_build.load_template(template)
    known = lambda_build.default_refs(parsed)
    refs = {}
    for logical, resource in parsed["Resources"].items():
        props = resource.get("Properties") or {}
        if resource["Type"] == "AWS::SecretsManager::Secret":
            client = session.client("secretsmanager", endpoint_url=endpoint)
            value = props.get("SecretString", "{}")
            refs[logical] = client.create_secret(Name=f"invoke-{logical}", SecretString=str(value))["ARN"]
        elif resource["Type"] == "AWS::SSM::Parameter":
            name = str(lambda_build.resolve(props.get("Name") or f"/invoke/{logical}", known))
            client = session.client("ssm", endpoint_url=endpoint)
            client.put_parameter(Name=name, Value=str(props["Value"]), Type=props.get("Type", "String"))
            refs[logical] = name
    return refs


def _put_stream_items(endpoint: str, table: str) -> None:
    """The items the stream events of events/ were made by, as settlement writes them: TallyFunction marks each
    record it counts, and a record whose item is gone is not counted."""
    import boto3

    credentials = {name.lower(): value for name, value in lambda_build.FAKE_CREDENTIALS.items()}
    session = boto3.session.Session(region_name=lambda_build.REGION, **credentials)
    client = session.client("dynamodb", endpoint_url=endpoint)
    for path in sorted(EVENTS.glob("*.json")):
        for record in json.loads(path.read_text()).get("Records", []):
            client.put_item(TableName=table, Item=record["dynamodb"]["NewImage"])


@contextlib.contextmanager
def local_aws(log: Path, template: Path = lambda_build.TEMPLATE) -> Iterator[LocalAws]:
    """moto's server (lambdas/dynamo_server.py, the gateway's own emulator) with the template's resources and a key."""
    from gateway.storage.tables import TABLE_ENV

    args = [sys.executable, "-m", "lambdas.dynamo_server", "--port", "0", "--prefix", "invoke", "--key"]
    ready = log.with_name(f"{log.name}.ready")  # its one line on stdout: endpoint, tables, key
    with log.open("wb") as err, ready.open("wb") as out:
        process = subprocess.Popen(args, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
    try:
        deadline = time.monotonic() + 60
        while not (line := ready.read_text()).endswith("\n"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"moto's server did not start:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.05)
        started = json.loads(line)
        refs = {logical: started["tables"][variable] for logical, variable in TABLE_ENV.items()}
        refs.update(_create_template_resources(started["endpoint"], template))
        _put_stream_items(started["endpoint"], refs["UsageTable"])
        yield LocalAws(endpoint=started["endpoint"], key=started["key"], refs=refs)
    finally:
        stop(process)


def load_event(path: Path, key: str) -> Any:
    return json.loads(path.read_text().replace(KEY_PLACEHOLDER, key))


def web_adapter_request(event: dict[str, Any]) -> tuple[str, str, dict[str, str], bytes]:
    """(method, path and query, headers, body) that the Web Adapter sends the app for an API Gateway event.

    As its src/lib.rs (fetch_response) builds them: the event's path without the stage, its headers,
    and the request context in `x-amzn-request-context`.
    """
    headers = {k: ", ".join(v) for k, v in (event.get("multiValueHeaders") or {}).items()}
    headers.pop("Content-Length", None)
    headers["x-amzn-request-context"] = json.dumps(event["requestContext"])
    headers["x-amzn-lambda-context"] = json.dumps({"request_id": "5d6f6a1e", "deadline": 0})
    body = event.get("body") or ""
    content = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()
    query = urllib.parse.urlencode(event.get("multiValueQueryStringParameters") or {}, doseq=True)
    return event["httpMethod"], event["path"] + (f"?{query}" if query else ""), headers, content


def replay(url: str, event: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
    """The event sent to the app at url as the Web Adapter sends it; the answer in API Gateway's proxy shape."""
    import httpx

    method, path, headers, content = web_adapter_request(event)
    with httpx.Client(base_url=url, timeout=timeout, trust_env=False) as client:
        response = client.request(method, path, headers=headers, content=content)
    return {"statusCode": response.status_code, "headers": dict(response.headers), "body": response.text}


def _usage(functions: dict[str, lambda_build.BuiltFunction]) -> str:
    lines = ["functions, and the events in events/ that target each:"]
    for name, fn in functions.items():
        targeted = [f"events/{p.name}" for p in sorted(EVENTS.glob("*.json")) if fn.targets(json.loads(p.read_text()))]
        if fn.schedules:
            targeted.insert(0, "(none: its schedule's event)")
        lines.append(f"  {name:<16} {' '.join(targeted)}")
    lines.append(
        "ChatFunction has no Python handler: its run.sh is started as the Lambda Web Adapter starts it, and each"
        "\nevent replayed to it as the adapter forwards it. The others run under the emulator with awslambdaric."
    )
    return "\n".join(lines)


def _ensure_sam() -> Path:
    """scripts/sam installs SAM CLI on first use (into .venv-sam); the emulator ships inside it."""
    result = subprocess.run([str(lambda_build.SAM), "--version"], stdout=subprocess.PIPE, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit("make invoke: scripts/sam could not install or run SAM CLI (see above)")
    binary = rie.rie_binary()
    if binary is None:
        raise SystemExit(f"make invoke: no aws-lambda-rie-{lambda_build.host_architecture()} in .venv-sam's samcli")
    return binary


def _new_logs(log: Path, seen: int) -> int:
    """Copies what the function logged since `seen` characters to stderr; returns the new count."""
    text = log.read_text(errors="replace")
    sys.stderr.write(text[seen:])
    return len(text)


def _run(
    fn: lambda_build.BuiltFunction, events: list[Any], python312: str, aws: LocalAws, binary: Path, tmp: Path
) -> int:
    """Each event through the function, its response on stdout and the logs it caused on stderr."""
    runtime = lambda_runtime.site_dir(tmp / "runtime", lambda_runtime.RUNTIME_PROVIDED, copy=False)
    failed, seen = 0, 0
    if fn.web_adapter:
        env, wrap = rie.lambda_tmp(tmp, [*fn.python_path, runtime])
        with lambda_runtime.web_adapter_app(
            fn, python312, runtime, tmp, {**env, **rie.SAM_LOCAL, **aws.environment()}, cwd=fn.code_dir, wrap=wrap
        ) as (process, url, log):
            ready = lambda_runtime.wait_ready(process, url, log)
            print(
                f"{fn.name}: run.sh ready in {ready * 1000:.0f} ms (the Web Adapter's readiness check)", file=sys.stderr
            )
            for event in events:
                started = time.perf_counter()
                answer = replay(url, event, timeout=fn.timeout)
                seen = _new_logs(log, seen)
                print(
                    f"{fn.name}: {answer['statusCode']} in {(time.perf_counter() - started) * 1000:.0f} ms",
                    file=sys.stderr,
                )
                print(json.dumps(answer, indent=2), flush=True)
        return 0
    try:
        client = rie.runtime_client(WORK / "awslambdaric-python3.12", python312)
    except RuntimeError as exc:  # the first run installs it from the package index
        raise SystemExit(f"make invoke: {exc}") from exc
    with rie.emulator(fn, python312, [client, runtime], tmp, aws.environment(), rie=binary) as emu:
        for event in events:
            invocation = emu.invoke(event)
            seen = _new_logs(emu.log, seen)
            inits = emu.inits()
            cold = f", cold start: init {inits[0]:.0f} ms" if len(inits) == 1 and event is events[0] else ""
            status = invocation.payload.get("statusCode") if isinstance(invocation.payload, dict) else None
            outcome = "function error" if invocation.error else status or "done"
            print(f"{fn.name}: {outcome} in {invocation.seconds * 1000:.0f} ms{cold}", file=sys.stderr, flush=True)
            print(json.dumps(invocation.payload, indent=2), flush=True)
            failed += invocation.error
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    functions = lambda_build.built_functions(ROOT)  # the source template, for the names and the events' targets
    parser = argparse.ArgumentParser(
        usage=(
            "make invoke FUNCTION=NAME [EVENT=events/FILE.json]\n"
            "       .venv/bin/python -m lambdas.invoke -f NAME [-e FILE]..."
        ),
        description="Run a built function under the Lambda Runtime Interface Emulator, as Lambda would.",
        epilog=_usage(functions),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-f", "--function", default="", help="FUNCTION: a function of template.yaml")
    parser.add_argument("-e", "--event", action="append", type=Path, default=[], help="EVENT: a JSON event (repeat)")
    parser.add_argument("--work", type=Path, default=lambda_build.WORK, help="where the build goes (as make coldstart)")
    args = parser.parse_args(argv)
    fn = functions.get(args.function)
    if fn is None:
        parser.print_help(sys.stderr)
        return 2
    if not args.event and not fn.schedules:
        parser.error(f"{fn.name} needs EVENT=events/....json (`make invoke` lists them)")
    missing = [str(p) for p in args.event if not p.is_file()]
    if missing:
        parser.error(f"no such event file: {', '.join(missing)}")

    python312 = lambda_build.find_python312()
    if python312 is None:
        raise SystemExit(
            "make invoke: python3.12 not found. It is the Lambda runtime's Python and what sam build builds with: "
            "install it (`pyenv install 3.12`, or your system's python3.12 package), or set LAMBDA_PYTHON to one."
        )
    binary = _ensure_sam()
    build = lambda_build.ensure_build(lambda_build.host_architecture(), args.work.resolve(), python312)
    with tempfile.TemporaryDirectory(prefix="invoke-") as tmp, local_aws(Path(tmp) / "moto.log") as aws:
        fn = lambda_build.built_functions(build, aws.refs)[fn.name]
        events = [load_event(path, aws.key) for path in args.event] or [SCHEDULED_EVENT]
        return _run(fn, events, python312, aws, binary, Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
