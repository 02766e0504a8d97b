"""A built function run the way Lambda runs it, without Docker: `make invoke FUNCTION=... EVENT=...`.

    make invoke FUNCTION=ModelsFunction EVENT=events/models-list.json
    make invoke FUNCTION=SweeperFunction                      # the schedule's event
    .venv/bin/python -m bench.invoke -f StatsFunction -e events/key-info.json -e events/stats.json

What it does:

- Builds the template with `sam build` for this machine's architecture (bench/coldstart.py: the
  template's arm64 replaced where this machine is another, into build/coldstart/ARCH/build, as
  `make coldstart` does), and reuses that build while template.yaml, functions/ and layers/gateway/
  are unchanged.
- Starts moto's server (bench/dynamo_server.py, in a process of its own) with the template's tables,
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
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import coldstart, processes

ROOT = coldstart.ROOT
EVENTS = ROOT / "events"
WORK = ROOT / "build" / "invoke"  # build/ is gitignored
SAM_VENV = ROOT / ".venv-sam"  # where scripts/sam installs SAM CLI
KEY_PLACEHOLDER = "sk-REPLACE-with-a-key-from-gateway-admin-create-key"  # in events/*.json
RUNTIME_CLIENT = "awslambdaric>=3.1,<5"
INVOKE_PATH = "/2015-03-31/functions/function/invocations"  # the emulator's Invoke API
JSON_BODY = {"Content-Type": "application/json"}
# What `sam local` sets in its containers, the same emulator's: the emulator passes no X-Ray trace
# header to the runtime, so Powertools' Tracer stays off, as there, instead of warning on every call.
SAM_LOCAL = {"AWS_SAM_LOCAL": "true"}
SCHEDULED_EVENT = {  # what EventBridge sends the sweeper (events/ holds API Gateway events only)
    "version": "0",
    "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": "123456789012",
    "time": "2025-01-01T00:00:00Z",
    "region": coldstart.REGION,
    "resources": ["arn:aws:events:us-east-1:123456789012:rule/llm-gateway-SweeperFunctionEvery5Minutes"],
    "detail": {},
}
INIT_REPORT = re.compile(r"INIT REPORT\(durationMs: ([\d.]+)\)")


# --- what the function needs from this machine ------------------------------------------------


def rie_binary(architecture: str | None = None) -> Path | None:
    """The Runtime Interface Emulator inside scripts/sam's aws-sam-cli package, or None before SAM CLI is installed."""
    python = SAM_VENV / "bin" / "python"
    if not python.exists():
        return None
    find = "import os, samcli; print(os.path.dirname(samcli.__file__))"
    result = subprocess.run([str(python), "-c", find], capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        return None
    rapid = Path(result.stdout.strip()) / "local" / "rapid"
    binary = rapid / f"aws-lambda-rie-{architecture or coldstart.host_architecture()}"
    return binary if binary.is_file() else None


def runtime_client(dest: Path, python312: str) -> Path:
    """awslambdaric and its dependencies, installed for python3.12 into dest once (pip's cache after that)."""
    marker = dest / ".installed"
    wanted = f"{RUNTIME_CLIENT} {python312}\n"
    if marker.is_file() and marker.read_text() == wanted:
        return dest
    shutil.rmtree(dest, ignore_errors=True)
    pip = [python312, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--only-binary=:all:"]
    result = subprocess.run(
        [*pip, "--target", str(dest), RUNTIME_CLIENT], capture_output=True, text=True, timeout=600, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"pip could not install {RUNTIME_CLIENT} for {python312}:\n{result.stderr[-3000:]}")
    marker.write_text(wanted)  # last, so an interrupted install is redone
    return dest


# A private mount namespace in which the kernel refuses writes, root's included, everywhere but in
# the writable directories, and in the read-only paths even where they lie inside those:
#   sh -c SCRIPT sh WRITABLE... -- READ_ONLY... -- COMMAND...
# /proc, /sys and /dev stay as they are. Paths with spaces are not supported.
READ_ONLY_SCRIPT = r"""
set -e
keep=""
while [ "$1" != -- ]; do mount --bind "$1" "$1"; keep="$keep $1 "; shift; done; shift
for target in $(awk '{print $5}' /proc/self/mountinfo); do
  case "$keep" in *" $target "*) continue ;; esac
  case "$target" in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) continue ;; esac
  mount -o remount,bind,ro "$target" 2>/dev/null || [ "$target" != / ]
done
while [ "$1" != -- ]; do mount --bind "$1" "$1"; mount -o remount,bind,ro "$1"; shift; done; shift
exec "$@"
"""
# Lambda's writable place is /tmp, and libraries write to that very path whatever TMPDIR says (the
# X-Ray SDK's /tmp/.aws-xray/initialized), so this machine's /tmp stays writable beside the private one.
SHARED_TMP = Path("/tmp")


def _read_only_command(writable: Path, read_only: Sequence[Path]) -> list[str]:
    paths = [str(writable), str(SHARED_TMP), "--", *map(str, read_only), "--"]
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", READ_ONLY_SCRIPT, "sh", *paths]


@functools.cache
def read_only_supported() -> bool:
    """Whether this process may make such a namespace (as root, with unshare): probed once."""
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("mount"):
        return False
    with tempfile.TemporaryDirectory() as tmp:
        private, code = Path(tmp) / "tmp", Path(tmp) / "code"
        private.mkdir()
        code.mkdir()
        check = 'touch "$1/probe" && [ ! -w / ] && [ ! -w "$2" ]'
        probe = [*_read_only_command(private, [code]), "sh", "-c", check, "sh", str(private), str(code)]
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            return subprocess.run(probe, capture_output=True, timeout=30, check=False).returncode == 0
    return False


def lambda_tmp(workdir: Path, code: Sequence[Path]) -> tuple[dict[str, str], list[str]]:
    """The function's private /tmp in workdir: (TMPDIR and HOME there, a command prefix for the rest).

    Under the prefix only that directory and this machine's /tmp are writable, and never the code
    (the function, its layers, the runtime's packages), as in Lambda. The prefix is empty where this
    machine allows no mount namespace: then only the tests' comparison of the code before and after
    (tests/test_invoke.py) would see a write.
    """
    tmp = workdir / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    return {"TMPDIR": str(tmp), "HOME": str(tmp)}, _read_only_command(tmp, code) if read_only_supported() else []


# --- AWS on loopback --------------------------------------------------------------------------


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

    credentials = {name.lower(): value for name, value in coldstart.FAKE_CREDENTIALS.items()}
    session = boto3.session.Session(region_name=coldstart.REGION, **credentials)
    parsed = coldstart.load_template(template)
    known = coldstart.default_refs(parsed)
    refs = {}
    for logical, resource in parsed["Resources"].items():
        props = resource.get("Properties") or {}
        if resource["Type"] == "AWS::SecretsManager::Secret":
            client = session.client("secretsmanager", endpoint_url=endpoint)
            value = props.get("SecretString", "{}")
            refs[logical] = client.create_secret(Name=f"invoke-{logical}", SecretString=str(value))["ARN"]
        elif resource["Type"] == "AWS::SSM::Parameter":
            name = str(coldstart.resolve(props.get("Name") or f"/invoke/{logical}", known))
            client = session.client("ssm", endpoint_url=endpoint)
            client.put_parameter(Name=name, Value=str(props["Value"]), Type=props.get("Type", "String"))
            refs[logical] = name
    return refs


@contextlib.contextmanager
def local_aws(log: Path, template: Path = coldstart.TEMPLATE) -> Iterator[LocalAws]:
    """moto's server (bench/dynamo_server.py, the gateway's own emulator) with the template's resources and a key."""
    from gateway.storage.tables import TABLE_ENV

    args = [sys.executable, "-m", "bench.dynamo_server", "--port", "0", "--prefix", "invoke", "--key"]
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
        yield LocalAws(endpoint=started["endpoint"], key=started["key"], refs=refs)
    finally:
        processes.stop(process)


def load_event(path: Path, key: str) -> Any:
    return json.loads(path.read_text().replace(KEY_PLACEHOLDER, key))


# --- a buffered function under the Runtime Interface Emulator ----------------------------------


def runtime_process(parent: int) -> tuple[int, int] | None:
    """(pid, start time in clock ticks) of the emulator's child, the runtime: the same pair means the same process."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
            if int(fields[1]) == parent:
                return int(stat.parent.name), int(fields[19])
    return None


@dataclass
class Invocation:
    payload: Any  # the function's response
    seconds: float  # the invoke request's round trip, the runtime's init included on a cold start
    runtime: tuple[int, int] | None  # runtime_process after it

    @property
    def error(self) -> bool:
        return isinstance(self.payload, dict) and "errorType" in self.payload


@dataclass
class Emulator:
    process: subprocess.Popen[bytes]
    url: str
    log: Path
    timeout: float

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def inits(self) -> list[float]:
        """The runtime's init durations in ms, one per cold start: the emulator's INIT REPORT lines."""
        return [float(ms) for ms in INIT_REPORT.findall(self.logs())]

    def invoke(self, event: Any) -> Invocation:
        """One invocation through the emulator's Invoke API."""
        request = urllib.request.Request(
            self.url + INVOKE_PATH, data=json.dumps(event).encode(), method="POST", headers=JSON_BODY
        )
        started = time.perf_counter()
        try:
            with coldstart.NO_PROXY.open(request, timeout=self.timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:  # the emulator's own failures: the runtime did not start, ...
            raise RuntimeError(
                f"the emulator answered {exc.code}: {exc.read()[:2000]!r}\n{self.logs()[-4000:]}"
            ) from exc
        seconds = time.perf_counter() - started
        return Invocation(json.loads(body) if body else None, seconds, runtime_process(self.process.pid))


@contextlib.contextmanager
def emulator(
    fn: coldstart.BuiltFunction,
    python312: str,
    sites: Sequence[Path],
    workdir: Path,
    extra_env: dict[str, str] | None = None,
    *,
    rie: Path,
) -> Iterator[Emulator]:
    """`aws-lambda-rie python -m awslambdaric HANDLER` in the built function's directory, listening on loopback.

    sites come after the function and its layers on sys.path: awslambdaric's, the runtime's boto3.
    """
    port, api_port = coldstart.free_port(), coldstart.free_port()
    bin_dir = coldstart.python_shim(workdir / "bin", python312)  # `python`: python3.12 -S, as run.sh also runs it
    tmp_env, wrap = lambda_tmp(workdir, [*fn.python_path, *sites, bin_dir])
    path = os.pathsep.join(map(str, [*fn.python_path, *sites]))
    # The emulator hands its own environment to the runtime, and reads the function's timeout from it.
    extra = {"PYTHONPATH": path, "AWS_LAMBDA_FUNCTION_TIMEOUT": str(fn.timeout), **SAM_LOCAL, **tmp_env}
    extra.update(extra_env or {})
    env = coldstart.lambda_environment(fn, extra)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    args = [
        *wrap,
        str(rie),
        "--runtime-interface-emulator-address",
        f"127.0.0.1:{port}",
        "--runtime-api-address",  # not the default 127.0.0.1:9001, so that emulators can run side by side
        f"127.0.0.1:{api_port}",
        str(bin_dir / "python"),
        "-m",
        "awslambdaric",
        fn.handler,
    ]
    log = workdir / f"{fn.name}-rie.log"
    with log.open("wb") as out:
        process = subprocess.Popen(args, cwd=fn.code_dir, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    try:
        url = f"http://127.0.0.1:{port}"
        coldstart.wait_ready(process, url, log, name="aws-lambda-rie")  # it answers 404 at /
        yield Emulator(process, url, log, timeout=fn.timeout + 30)
    finally:
        processes.stop(process)


# --- the chat function: run.sh behind the Web Adapter -----------------------------------------


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


# --- the command ------------------------------------------------------------------------------


def _usage(functions: dict[str, coldstart.BuiltFunction]) -> str:
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
    result = subprocess.run([str(coldstart.SAM), "--version"], stdout=subprocess.PIPE, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit("make invoke: scripts/sam could not install or run SAM CLI (see above)")
    rie = rie_binary()
    if rie is None:
        raise SystemExit(f"make invoke: no aws-lambda-rie-{coldstart.host_architecture()} in .venv-sam's samcli")
    return rie


def _new_logs(log: Path, seen: int) -> int:
    """Copies what the function logged since `seen` characters to stderr; returns the new count."""
    text = log.read_text(errors="replace")
    sys.stderr.write(text[seen:])
    return len(text)


def _run(fn: coldstart.BuiltFunction, events: list[Any], python312: str, aws: LocalAws, rie: Path, tmp: Path) -> int:
    """Each event through the function, its response on stdout and the logs it caused on stderr."""
    runtime = coldstart.site_dir(tmp / "runtime", coldstart.RUNTIME_PROVIDED, copy=False)
    failed, seen = 0, 0
    if fn.web_adapter:
        env, wrap = lambda_tmp(tmp, [*fn.python_path, runtime])
        with coldstart.web_adapter_app(
            fn, python312, runtime, tmp, {**env, **SAM_LOCAL, **aws.environment()}, cwd=fn.code_dir, wrap=wrap
        ) as (process, url, log):
            ready = coldstart.wait_ready(process, url, log)
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
        client = runtime_client(WORK / "awslambdaric-python3.12", python312)
    except RuntimeError as exc:  # the first run installs it from the package index
        raise SystemExit(f"make invoke: {exc}") from exc
    with emulator(fn, python312, [client, runtime], tmp, aws.environment(), rie=rie) as emu:
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
    functions = coldstart.built_functions(ROOT)  # the source template, for the names and the events' targets
    parser = argparse.ArgumentParser(
        usage=(
            "make invoke FUNCTION=NAME [EVENT=events/FILE.json]\n"
            "       .venv/bin/python -m bench.invoke -f NAME [-e FILE]..."
        ),
        description="Run a built function under the Lambda Runtime Interface Emulator, as Lambda would.",
        epilog=_usage(functions),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-f", "--function", default="", help="FUNCTION: a function of template.yaml")
    parser.add_argument("-e", "--event", action="append", type=Path, default=[], help="EVENT: a JSON event (repeat)")
    parser.add_argument("--work", type=Path, default=coldstart.WORK, help="where the build goes (as make coldstart)")
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

    python312 = coldstart.find_python312()
    if python312 is None:
        raise SystemExit(
            "make invoke: python3.12 not found. It is the Lambda runtime's Python and what sam build builds with: "
            "install it (`pyenv install 3.12`, or your system's python3.12 package), or set LAMBDA_PYTHON to one."
        )
    rie = _ensure_sam()
    build = coldstart.ensure_build(coldstart.host_architecture(), args.work.resolve(), python312)
    with tempfile.TemporaryDirectory(prefix="invoke-") as tmp, local_aws(Path(tmp) / "moto.log") as aws:
        fn = coldstart.built_functions(build, aws.refs)[fn.name]
        events = [load_event(path, aws.key) for path in args.event] or [SCHEDULED_EVENT]
        return _run(fn, events, python312, aws, rie, Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
