"""A buffered function under the Lambda Runtime Interface Emulator, and what it needs from this machine.

The emulator ships inside the aws-sam-cli package (samcli/local/rapid/aws-lambda-rie-ARCH, what
`sam local` runs in its containers); awslambdaric is the runtime interface client of Lambda's own
Python images, installed for python3.12 apart from any layer; where this process may create a mount
namespace, the function sees every file system read-only but its own /tmp. `make invoke`
(lambdas/invoke.py) and tests/lambda/test_invoke.py run functions through these.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.local.child import stop
from gateway.local.dynamodb import free_port
from lambdas import builds as lambda_build
from lambdas import runtime as lambda_runtime

SAM_VENV = lambda_build.ROOT / ".venv-sam"  # where scripts/sam installs SAM CLI
# What `sam local` sets in its containers, the same emulator's: the emulator passes no X-Ray trace
# header to the runtime, so Powertools' Tracer stays off, as there, instead of warning on every call.
SAM_LOCAL = {"AWS_SAM_LOCAL": "true"}
RUNTIME_CLIENT = "awslambdaric>=3.1,<5"
INVOKE_PATH = "/2015-03-31/functions/function/invocations"  # the emulator's Invoke API
JSON_BODY = {"Content-Type": "application/json"}
INIT_REPORT = re.compile(r"INIT REPORT\(durationMs: ([\d.]+)\)")


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
    binary = rapid / f"aws-lambda-rie-{architecture or lambda_build.host_architecture()}"
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
    (tests/lambda/test_invoke.py) would see a write.
    """
    tmp = workdir / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    return {"TMPDIR": str(tmp), "HOME": str(tmp)}, _read_only_command(tmp, code) if read_only_supported() else []


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
            with lambda_runtime.NO_PROXY.open(request, timeout=self.timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:  # the emulator's own failures: the runtime did not start, ...
            raise RuntimeError(
                f"the emulator answered {exc.code}: {exc.read()[:2000]!r}\n{self.logs()[-4000:]}"
            ) from exc
        seconds = time.perf_counter() - started
        return Invocation(json.loads(body) if body else None, seconds, runtime_process(self.process.pid))


@contextlib.contextmanager
def emulator(
    fn: lambda_build.BuiltFunction,
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
    port, api_port = free_port(), free_port()
    bin_dir = lambda_runtime.python_shim(workdir / "bin", python312)  # `python`: python3.12 -S, as run.sh also runs it
    tmp_env, wrap = lambda_tmp(workdir, [*fn.python_path, *sites, bin_dir])
    path = os.pathsep.join(map(str, [*fn.python_path, *sites]))
    # The emulator hands its own environment to the runtime, and reads the function's timeout from it.
    extra = {"PYTHONPATH": path, "AWS_LAMBDA_FUNCTION_TIMEOUT": str(fn.timeout), **SAM_LOCAL, **tmp_env}
    extra.update(extra_env or {})
    env = lambda_build.lambda_environment(fn, extra)
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
        lambda_runtime.wait_ready(process, url, log, name="aws-lambda-rie")  # it answers 404 at /
        yield Emulator(process, url, log, timeout=fn.timeout + 30)
    finally:
        stop(process)
