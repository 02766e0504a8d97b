"""Cold start of each Lambda function: init (import) time and unzipped size, from real `sam build` output.

    .venv/bin/python -m bench.coldstart              # sam build (arm64 and this machine's arch), measure, print
    .venv/bin/python -m bench.coldstart --reuse      # the builds of the last run again, if still current
    .venv/bin/python -m bench.coldstart --runs 15 --json build/coldstart/figures.json --check

What it measures, for every function of template.yaml:

- init: the import of the function's handler module (`app` for the Mangum functions and the sweeper,
  `main` for the chat app), in a fresh python3.12 process, the Lambda runtime's version. The
  process sees only what Lambda gives the function: sys.path holds the built function, the built
  layer's python/ and boto3 with its dependencies (the runtime provides those), the environment is
  the template's plus Lambda's own variables (so Powertools' Tracer patches as it does in Lambda),
  and any AWS call goes to a closed port. The median of --runs processes, as wall and CPU time, in
  two variants: "as built" (sam build writes no .pyc, and Lambda's /opt and /var/task are
  read-only, so every cold start compiles every module it imports from source) and "with .pyc"
  (the same build precompiled with compileall, what a layer build that compiles would give).
- ready (chat only): the built run.sh started as the Web Adapter starts it, until GET / answers:
  the interpreter, uvicorn and the app, which is the chat function's real init.
- size: the sum of the file sizes of the function's code and its layers in the arm64 build (the
  one that deploys; Lambda's 250 MB limit counts the same way). The Lambda Web Adapter layer is
  AWS's own and is not built here: it adds one Rust binary of about 5 MB to the chat function.
- where the import time goes: `python -X importtime` of one process per function, summed by
  top-level package (self time) and as a tree of the imports above a threshold.

The import times are taken on this machine's architecture: arm64 wheels cannot be imported on
x86_64, so a second build of the same template with x86_64 in place of arm64 stands in for it
(tests/test_build.py checks that both builds hold the same Python files). Expect Lambda's figures
to differ with its CPU share (MemorySize) and the machine's load; the load average is printed.

Also usable as a library (bench/invoke.py, tests/lambda_builds.py, tests/test_build.py): finding
python3.12, building (and knowing when a build is still current), reading the built template,
assembling the runtime's site-packages, and starting run.sh as the Web Adapter does.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import glob
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import processes

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
SAM = ROOT / "scripts" / "sam"
WORK = ROOT / "build" / "coldstart"  # build/ is gitignored
# What `sam build` reads, hashed into a stamp beside each build so that a build can tell it is current.
BUILD_SOURCES = ("template.yaml", "functions", "layers/gateway")
BUILD_STAMP = ".sources.sha256"
REGION = "us-east-1"

# The issue's targets on this machine: the import of the handler module, and the unzipped size.
TARGET_MS = {"ModelsFunction": 300, "StatsFunction": 300, "ChatFunction": 500}
SIZE_LIMIT_MB = 25
WEB_ADAPTER_NOTE = "the Lambda Web Adapter layer (AWS's, ~5 MB: one Rust binary) is not included"
# What the python3.12 runtime provides besides the standard library (boto3 and its dependencies).
RUNTIME_PROVIDED = ("boto3",)
# Any AWS call made while importing goes here and fails at once (the discard port, closed).
NO_AWS = "http://127.0.0.1:9"
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}
PSEUDO = {
    "AWS::Region": REGION,
    "AWS::Partition": "aws",
    "AWS::AccountId": "123456789012",
    "AWS::StackName": "llm-gateway",
    "AWS::URLSuffix": "amazonaws.com",
}
ARCH_KEYS = re.compile(
    r"^(\s*(?:Architectures|CompatibleArchitectures):\s*)\[arm64\]\s*$|^(\s*BuildArchitecture:\s*)arm64\s*$"
)
ELF_MACHINES = {0x3E: "x86_64", 0xB7: "arm64"}


# --- python3.12 and sam build -----------------------------------------------------------------


def find_python312() -> str | None:
    """The python3.12 to build and run with: $LAMBDA_PYTHON, pyenv's, or one on PATH (a pyenv shim may not run)."""
    candidates = [os.environ.get("LAMBDA_PYTHON", "")]
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        pyenv_root = subprocess.run(["pyenv", "root"], capture_output=True, text=True, timeout=10).stdout.strip()
        if pyenv_root:
            candidates += sorted(glob.glob(f"{pyenv_root}/versions/3.12*/bin/python3.12"), reverse=True)
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12")), reverse=True)
    candidates += [shutil.which("python3.12") or "", "/usr/bin/python3.12", "/usr/local/bin/python3.12"]
    for candidate in filter(None, candidates):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            check = "import sys; sys.exit(sys.version_info[:2] != (3, 12))"
            if subprocess.run([candidate, "-c", check], capture_output=True, timeout=30).returncode == 0:
                return candidate
    return None


def host_architecture() -> str:
    machine = platform.machine().lower()
    return {"aarch64": "arm64", "arm64": "arm64", "x86_64": "x86_64", "amd64": "x86_64"}.get(machine, machine)


def template_for(architecture: str, directory: Path, template: Path = TEMPLATE) -> Path:
    """template.yaml with every arm64 of Architectures, CompatibleArchitectures and BuildArchitecture replaced.

    Build it with `--base-dir` at the repository root so CodeUri and ContentUri still find the code.
    """
    lines, replaced = [], 0
    for line in template.read_text().splitlines(keepends=True):
        match = ARCH_KEYS.match(line.rstrip("\n"))
        if match and architecture != "arm64":
            prefix = match.group(1) or match.group(2)
            line = f"{prefix}[{architecture}]\n" if match.group(1) else f"{prefix}{architecture}\n"
            replaced += 1
        lines.append(line)
    if architecture != "arm64" and replaced < 3:
        raise RuntimeError(f"expected Architectures, CompatibleArchitectures and BuildArchitecture in {template}")
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / "template.yaml"
    out.write_text("".join(lines))
    return out


def sam_build(
    template: Path, build_dir: Path, python312: str, *, architecture: str = "arm64", timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """`scripts/sam build` without containers into build_dir, with python3.12 on PATH (BuildMethod python3.12).

    LAYER_PLATFORM names the wheels' platform for a layer built by a Makefile (BuildMethod makefile),
    which sam build does not tell the architecture to.
    """
    if build_dir.exists():
        shutil.rmtree(build_dir)
    build_dir.parent.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PATH": f"{Path(python312).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "SAM_CLI_TELEMETRY": "0",
        "LAYER_PLATFORM": "manylinux2014_aarch64" if architecture == "arm64" else "manylinux2014_x86_64",
        "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", REGION),
    }
    args = [str(SAM), "build", "--template-file", str(template), "--base-dir", str(ROOT), "--build-dir", str(build_dir)]
    return subprocess.run(
        args, cwd=build_dir.parent, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def source_digest(root: Path = ROOT) -> str:
    """SHA-256 of every file `sam build` reads (paths, contents, executable bits), bytecode and egg-info aside."""
    digest = hashlib.sha256()
    for top in BUILD_SOURCES:
        path = root / top
        for file in [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()):
            relative = file.relative_to(root)
            if "__pycache__" in relative.parts or any(part.endswith(".egg-info") for part in relative.parts):
                continue
            executable = os.access(file, os.X_OK)
            digest.update(f"{relative}\0{executable}\0".encode() + file.read_bytes() + b"\0")
    return digest.hexdigest()


def ensure_build(architecture: str, work: Path, python312: str, *, reuse: bool = True) -> Path:
    """work/ARCH/build, from `sam build` of the template for this architecture; with reuse, kept while it is current.

    A build is current when the stamp it was given holds the architecture and the sources' digest
    of now: any edit to template.yaml, functions/ or layers/gateway/ builds again.
    """
    build_dir = work / architecture / "build"
    stamp = build_dir / BUILD_STAMP
    wanted = f"{architecture} {source_digest()}\n"
    if reuse and stamp.is_file() and stamp.read_text() == wanted:
        return build_dir
    template = template_for(architecture, work / architecture)
    started = time.perf_counter()
    where = build_dir.relative_to(ROOT) if build_dir.is_relative_to(ROOT) else build_dir
    print(f"sam build ({architecture}) into {where} ...", file=sys.stderr, flush=True)
    result = sam_build(template, build_dir, python312, architecture=architecture)
    if result.returncode != 0:
        raise SystemExit(f"sam build ({architecture}) failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    stamp.write_text(wanted)
    print(f"sam build ({architecture}) done in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return build_dir


# --- the built template -----------------------------------------------------------------------


def load_template(path: Path) -> dict[str, Any]:
    """A SAM/CloudFormation template with short-form intrinsics kept as {"Ref": x} / {"Fn::Sub": x} / ..."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
        if suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
        return {"Ref" if suffix == "Ref" else f"Fn::{suffix}": value}

    Loader.add_multi_constructor("!", intrinsic)
    return yaml.load(path.read_text(), Loader=Loader)


def resolve(value: Any, refs: dict[str, str]) -> Any:
    """Ref and Fn::Sub against refs (parameters, resources, pseudo parameters); anything else stays as is."""
    if isinstance(value, dict) and len(value) == 1:
        ((kind, arg),) = value.items()
        if kind == "Ref" and isinstance(arg, str) and arg in refs:
            return refs[arg]
        if kind == "Fn::Sub" and isinstance(arg, str):
            return re.sub(r"\$\{([^}!]+)\}", lambda m: refs.get(m.group(1), m.group(0)), arg)
    return value


@dataclass
class BuiltFunction:
    name: str
    code_dir: Path
    handler: str
    memory: int
    timeout: int  # seconds
    environment: dict[str, str]
    layer_dirs: list[Path]  # layers built here (their python/ goes on sys.path)
    external_layers: list[str]  # layer ARNs from elsewhere (the Web Adapter)
    api_routes: list[tuple[str, str]] = field(default_factory=list)  # (METHOD, path) of its Api events
    schedules: list[str] = field(default_factory=list)

    @property
    def web_adapter(self) -> bool:
        """Started by the Lambda Web Adapter as a program (run.sh) instead of a Python handler."""
        return self.environment.get("AWS_LAMBDA_EXEC_WRAPPER") == "/opt/bootstrap" or self.handler.endswith(".sh")

    @property
    def module(self) -> str:
        """The module whose import is the function's init: the handler's, or the app that run.sh serves."""
        if self.web_adapter:
            text = (self.code_dir / self.handler).read_text()
            match = re.search(r"uvicorn\s+(?:--\S+\s+)*([\w.]+):\w+", text)
            return match.group(1) if match else "main"
        return self.handler.rsplit(".", 1)[0]

    @property
    def python_path(self) -> list[Path]:
        return [self.code_dir, *(d / "python" for d in self.layer_dirs)]

    def targets(self, event: dict[str, Any]) -> bool:
        if "httpMethod" in event:
            return (event["httpMethod"].upper(), event.get("resource") or event.get("path")) in self.api_routes
        return bool(self.schedules) and event.get("detail-type") == "Scheduled Event"


def default_refs(template: dict[str, Any]) -> dict[str, str]:
    """The pseudo parameters and each parameter's default, what Ref and Fn::Sub resolve against."""
    parameters = template.get("Parameters") or {}
    return {**PSEUDO, **{name: str(p.get("Default", "")) for name, p in parameters.items()}}


def built_functions(build_dir: Path, refs: dict[str, str] | None = None) -> dict[str, BuiltFunction]:
    """Every AWS::Serverless::Function of build_dir/template.yaml, with Globals applied and paths into build_dir."""
    template = load_template(build_dir / "template.yaml")
    resources = template["Resources"]
    defaults = (template.get("Globals") or {}).get("Function") or {}
    known = default_refs(template)
    known.update({name: name for name in resources})  # a resource's Ref stands for its name unless refs says
    known.update(refs or {})
    found = {}
    for name, resource in resources.items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = {**defaults, **resource.get("Properties", {})}
        variables = {
            **((defaults.get("Environment") or {}).get("Variables") or {}),
            **(((resource.get("Properties") or {}).get("Environment") or {}).get("Variables") or {}),
        }
        environment = {k: str(resolve(v, known)) for k, v in variables.items()}
        layers = [*(defaults.get("Layers") or []), *((resource.get("Properties") or {}).get("Layers") or [])]
        layer_dirs, external = [], []
        for layer in layers:
            logical = layer.get("Ref") if isinstance(layer, dict) else None
            if logical in resources and resources[logical]["Type"] == "AWS::Serverless::LayerVersion":
                layer_dirs.append(build_dir / resources[logical]["Properties"]["ContentUri"])
            else:
                external.append(str(resolve(layer, known)))
        routes, schedules = [], []
        for event in (props.get("Events") or {}).values():
            if event.get("Type") == "Api":
                routes.append((event["Properties"]["Method"].upper(), event["Properties"]["Path"]))
            elif event.get("Type") == "Schedule":
                schedules.append(str(event["Properties"]["Schedule"]))
        found[name] = BuiltFunction(
            name=name,
            code_dir=build_dir / props["CodeUri"],
            handler=props["Handler"],
            memory=int(props.get("MemorySize", 128)),
            timeout=int(props.get("Timeout", 3)),
            environment=environment,
            layer_dirs=layer_dirs,
            external_layers=external,
            api_routes=routes,
            schedules=schedules,
        )
    return found


def lambda_environment(fn: BuiltFunction, extra: dict[str, str] | None = None) -> dict[str, str]:
    """What Lambda sets for the function (no AWS_SAM_LOCAL: Powertools behaves as deployed), and the template's."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "HOME": tempfile.gettempdir(),
        "LAMBDA_TASK_ROOT": str(fn.code_dir),
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
        "AWS_LAMBDA_FUNCTION_NAME": fn.name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{fn.name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2025/01/01/[$LATEST]0123456789abcdef",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        **FAKE_CREDENTIALS,
        "PYTHONDONTWRITEBYTECODE": "1",  # /opt and /var/task are read-only in Lambda
        **fn.environment,
        **(extra or {}),
    }


# --- the runtime's site-packages --------------------------------------------------------------


def distributions(requirements: Iterable[str]) -> list[importlib.metadata.Distribution]:
    """The installed distributions that these requirements need, dependencies and extras included."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: dict[str, set[str]] = {}
    found: dict[str, importlib.metadata.Distribution] = {}
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen and set(req.extras) <= seen[name]:
            continue
        seen[name] = seen.get(name, set()) | set(req.extras)
        dist = found[name] = importlib.metadata.distribution(req.name)
        for raw in dist.requires or []:
            dep = Requirement(raw)
            if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for e in seen[name] or {""}):
                todo.append(dep)
    return list(found.values())


def top_levels(dist: importlib.metadata.Distribution) -> set[Path]:
    """The files and directories a distribution puts at the top of site-packages (its dist-info included)."""
    tops = set()
    for file in dist.files or ():
        if file.parts and file.parts[0] not in ("..", "__pycache__") and not file.parts[0].endswith(".pth"):
            tops.add(Path(str(dist.locate_file(file.parts[0]))))
    return tops


def pure_python(dist: importlib.metadata.Distribution) -> bool:
    return "root-is-purelib: true" in (dist.read_text("WHEEL") or "").lower()


def site_dir(
    dest: Path,
    requirements: Iterable[str],
    *,
    copy: bool,
    exclude: Iterable[str] = (),
    python312: str | None = None,
) -> Path:
    """A directory holding only these distributions, at the versions this interpreter's environment has.

    Pure-Python ones come from this environment: copy=False links them (fast; for the tests), copy=True
    copies them without bytecode (so python3.12 can compile into the copy, as the runtime's own packages
    are). Compiled ones are built for another Python version, so with python312 given they are installed
    for it from the package index (pip's cache), same version; without it they are left out.
    """
    skip = {d.metadata["Name"].lower() for d in distributions(exclude)} if exclude else set()
    dest.mkdir(parents=True, exist_ok=True)
    compiled = []
    for dist in distributions(requirements):
        if dist.metadata["Name"].lower() in skip:
            continue
        if not pure_python(dist):
            compiled.append(f"{dist.metadata['Name']}=={dist.version}")
            continue
        for top in top_levels(dist):
            target = dest / top.name
            if target.exists() or target.is_symlink() or not top.exists():
                continue
            if not copy:
                target.symlink_to(top, target_is_directory=top.is_dir())
            elif top.is_dir():
                shutil.copytree(top, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(top, target)
    if compiled and python312:
        pip = [python312, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps"]
        pip += ["--only-binary=:all:", "--no-compile", "--target", str(dest), *compiled]
        subprocess.run(pip, check=True, capture_output=True, text=True, timeout=600)
    return dest


def compile_tree(python312: str, *paths: Path) -> None:
    """Bytecode for every module, valid whatever the file times (unchecked-hash), as a layer build could ship it."""
    args = [python312, "-m", "compileall", "-q", "-j0", "--invalidation-mode", "unchecked-hash", *map(str, paths)]
    subprocess.run(args, check=True, capture_output=True, timeout=600)


# --- sizes and architectures ------------------------------------------------------------------


def tree_size(path: Path) -> int:
    """The sum of the regular files' sizes: what the unzipped limit counts."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def biggest(path: Path, count: int = 8) -> list[tuple[str, int]]:
    sizes = [(p.name, tree_size(p) if p.is_dir() else p.stat().st_size) for p in path.iterdir()]
    return sorted(sizes, key=lambda item: -item[1])[:count]


def elf_architecture(path: Path) -> str:
    """x86_64, arm64, or what the ELF header says otherwise (e_machine, little-endian)."""
    header = path.read_bytes()[:20]
    if header[:4] != b"\x7fELF":
        return "not ELF"
    machine = int.from_bytes(header[18:20], "little" if header[5] == 1 else "big")
    return ELF_MACHINES.get(machine, hex(machine))


def wheel_tags(layer_python: Path) -> dict[str, list[str]]:
    """Each installed distribution's wheel tags (from its dist-info's WHEEL file)."""
    tags = {}
    for wheel in layer_python.glob("*.dist-info/WHEEL"):
        lines = wheel.read_text().splitlines()
        tags[wheel.parent.name] = [line.split(":", 1)[1].strip() for line in lines if line.startswith("Tag:")]
    return tags


MB = 1024 * 1024


def mb(size: int) -> str:
    return f"{size / MB:.1f} MB"


# --- measuring --------------------------------------------------------------------------------

MARK = "COLDSTART-RESULT "
CHILD = """
import sys, time
wall, cpu = time.perf_counter(), time.process_time()
import importlib
importlib.import_module(sys.argv[1])
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
sys.stdout.flush()
import json
print({mark!r} + json.dumps([wall * 1000, cpu * 1000]), flush=True)
"""


def child_env(fn: BuiltFunction, site: Path) -> dict[str, str]:
    path = os.pathsep.join(map(str, [*fn.python_path, site]))
    return lambda_environment(fn, {"PYTHONPATH": path, "AWS_ENDPOINT_URL": NO_AWS})


def import_once(python312: str, fn: BuiltFunction, site: Path, *, importtime: bool = False) -> tuple[float, float, str]:
    """(wall ms, CPU ms, stderr) of importing the function's module in a fresh process (-S: only our sys.path)."""
    args = [python312, "-S", *(["-X", "importtime"] if importtime else []), "-c", CHILD.format(mark=MARK), fn.module]
    result = subprocess.run(
        args, cwd=fn.code_dir, env=child_env(fn, site), capture_output=True, text=True, timeout=120, check=False
    )
    for line in result.stdout.splitlines():
        if line.startswith(MARK):
            wall, cpu = json.loads(line[len(MARK) :])
            return wall, cpu, result.stderr
    raise RuntimeError(f"importing {fn.module} for {fn.name} failed ({result.returncode}):\n{result.stderr[-3000:]}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def python_shim(directory: Path, python312: str) -> Path:
    """A bin directory whose `python` is python3.12 without site-packages: run.sh runs `python`."""
    directory.mkdir(parents=True, exist_ok=True)
    shim = directory / "python"
    shim.write_text(f'#!/bin/sh\nexec "{python312}" -S "$@"\n')
    shim.chmod(0o755)
    return directory


@contextlib.contextmanager
def web_adapter_app(
    fn: BuiltFunction,
    python312: str,
    site: Path,
    workdir: Path,
    extra_env: dict[str, str] | None = None,
    *,
    cwd: Path | None = None,
    wrap: Sequence[str] = (),
) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    """The built run.sh, started as the Web Adapter starts it: (process, base URL, log file).

    It runs in cwd (default workdir) under the command prefix wrap (bench/invoke.py's read-only file systems).
    """
    port = free_port()
    bin_dir = python_shim(workdir / "bin", python312)
    # run.sh puts /opt/python (the layer, in Lambda) and LAMBDA_TASK_ROOT in front of PYTHONPATH.
    path = os.pathsep.join(map(str, [*fn.python_path[1:], site]))
    env = lambda_environment(fn, {"PORT": str(port), "PYTHONPATH": path, **(extra_env or {})})
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    log = workdir / f"{fn.name}-run.sh.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*wrap, str(fn.code_dir / fn.handler)], cwd=cwd or workdir, env=env, stdout=out, stderr=out
        )
    try:
        yield process, f"http://127.0.0.1:{port}", log
    finally:
        processes.stop(process)


NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback never goes through a proxy


def wait_ready(
    process: subprocess.Popen[bytes], url: str, log: Path, timeout: float = 60, name: str = "run.sh"
) -> float:
    """Seconds until GET / answers below 500, the Web Adapter's readiness check (or any HTTP server's)."""
    start = time.perf_counter()
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        if time.perf_counter() - start > timeout:
            raise RuntimeError(f"{name} not ready after {timeout} s:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with NO_PROXY.open(f"{url}/", timeout=2) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except (OSError, urllib.error.URLError):
            time.sleep(0.005)
            continue
        if status < 500:
            return time.perf_counter() - start
        time.sleep(0.005)


def ready_once(python312: str, fn: BuiltFunction, site: Path, workdir: Path) -> float:
    with web_adapter_app(fn, python312, site, workdir, {"AWS_ENDPOINT_URL": NO_AWS}) as (process, url, log):
        return wait_ready(process, url, log) * 1000


IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def parse_importtime(stderr: str) -> list[tuple[int, int, int, str]]:
    """(self µs, cumulative µs, depth, module) in import order, parents before their children."""
    rows = []
    for line in stderr.splitlines():
        match = IMPORT_LINE.match(line)
        if match:
            rows.append((int(match[1]), int(match[2]), (len(match[3]) - 1) // 2, match[4]))
    # -X importtime prints a module after the modules it imported; reversed, each parent leads.
    return rows[::-1]


def by_package(rows: list[tuple[int, int, int, str]]) -> list[tuple[str, float]]:
    totals: collections.Counter[str] = collections.Counter()
    for self_us, _, _, module in rows:
        totals[module.split(".")[0]] += self_us
    return [(name, us / 1000) for name, us in totals.most_common()]


def import_tree(rows: list[tuple[int, int, int, str]], threshold_ms: float, depth: int) -> list[str]:
    lines = []
    for self_us, cumulative_us, level, module in rows:
        if cumulative_us >= threshold_ms * 1000 and level <= depth:
            lines.append(f"{'  ' * level}{module}  {cumulative_us / 1000:.0f} ms (self {self_us / 1000:.0f})")
    return lines


@dataclass
class Figures:
    function: str
    module: str
    built_wall: float
    built_cpu: float
    pyc_wall: float
    pyc_cpu: float
    size: int
    ready_built: float | None = None
    ready_pyc: float | None = None
    packages: list[tuple[str, float]] = field(default_factory=list)
    tree: list[str] = field(default_factory=list)


def measure(
    fn: BuiltFunction,
    fn_pyc: BuiltFunction,
    size: int,
    python312: str,
    site: Path,
    workdir: Path,
    runs: int,
    threshold_ms: float,
) -> Figures:
    built, compiled = [], []
    import_once(python312, fn_pyc, site)  # warm the page cache once for both variants
    for _ in range(runs):  # interleaved, so a change in the machine's load hits both variants alike
        built.append(import_once(python312, fn, site)[:2])
        compiled.append(import_once(python312, fn_pyc, site)[:2])
    rows = parse_importtime(import_once(python312, fn_pyc, site, importtime=True)[2])
    figures = Figures(
        function=fn.name,
        module=fn.module,
        built_wall=statistics.median(w for w, _ in built),
        built_cpu=statistics.median(c for _, c in built),
        pyc_wall=statistics.median(w for w, _ in compiled),
        pyc_cpu=statistics.median(c for _, c in compiled),
        size=size,
        packages=by_package(rows)[:12],
        tree=import_tree(rows, threshold_ms, depth=4),
    )
    if fn.web_adapter:
        figures.ready_built = statistics.median(ready_once(python312, fn, site, workdir) for _ in range(runs))
        figures.ready_pyc = statistics.median(ready_once(python312, fn_pyc, site, workdir) for _ in range(runs))
    return figures


# --- the command ------------------------------------------------------------------------------


def build_all(work: Path, python312: str, reuse: bool) -> dict[str, Path]:
    """{"arm64": build dir, host arch: build dir}, built concurrently (or reused while current)."""
    arches = sorted({"arm64", host_architecture()})
    with ThreadPoolExecutor(max_workers=2) as pool:
        built = pool.map(lambda arch: ensure_build(arch, work, python312, reuse=reuse), arches)
        return dict(zip(arches, built, strict=True))


def report(figures: list[Figures], runs: int, load: tuple[float, float, float], arch: str) -> str:
    out = [
        f"Cold start: python3.12 on this machine ({arch}, {os.cpu_count()} CPUs, load average "
        f"{load[0]:.1f} before / {os.getloadavg()[0]:.1f} after), median of {runs} fresh processes.",
        "init = import of the handler module; 'as built' compiles from source as Lambda does today,",
        f"'with .pyc' is the same build precompiled. Size = function + its layers (arm64 build); {WEB_ADAPTER_NOTE}.",
        "",
        f"{'function':<16} {'module':<6} {'init as built':>18} {'init with .pyc':>18} {'target':>7} "
        f"{'size':>9} {'limit':>6}",
        f"{'':<16} {'':<6} {'wall / CPU ms':>18} {'wall / CPU ms':>18}",
    ]
    for f in figures:
        target = TARGET_MS.get(f.function)
        verdict = []
        if target is not None:
            verdict.append("init ok" if f.built_wall <= target else "init OVER")
        verdict.append("size ok" if f.size <= SIZE_LIMIT_MB * MB else "size OVER")
        out.append(
            f"{f.function:<16} {f.module:<6} {f'{f.built_wall:.0f} / {f.built_cpu:.0f}':>18} "
            f"{f'{f.pyc_wall:.0f} / {f.pyc_cpu:.0f}':>18} {f'{target} ms' if target else '-':>7} "
            f"{mb(f.size):>9} {f'{SIZE_LIMIT_MB} MB':>6}  {', '.join(verdict)}"
        )
    for f in figures:
        if f.ready_built is not None:
            out.append(
                f"\n{f.function}: run.sh until GET / answers (interpreter + uvicorn + app, the Web Adapter's "
                f"readiness): {f.ready_built:.0f} ms as built, {f.ready_pyc:.0f} ms with .pyc."
            )
    for f in figures:
        out.append(f"\n== {f.function}: where `import {f.module}` spends its time (with .pyc, one -X importtime run)")
        out.append("by package, self time: " + ", ".join(f"{name} {ms:.0f}" for name, ms in f.packages))
        out.extend(f.tree)
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="fresh processes per figure (median)")
    parser.add_argument("--reuse", action="store_true", help="reuse the builds in --work unless the sources changed")
    parser.add_argument("--work", type=Path, default=WORK, help="where the builds go (default build/coldstart)")
    parser.add_argument("--threshold", type=float, default=20, help="ms: show imports at least this slow")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)

    python312 = find_python312()
    if python312 is None:
        raise SystemExit("python3.12 not found (set LAMBDA_PYTHON): it is both the build's and Lambda's runtime")
    load = os.getloadavg()
    work = args.work.resolve()
    dirs = build_all(work, python312, args.reuse)
    arch = host_architecture()
    host_dir, arm_dir = dirs[arch], dirs["arm64"]

    # The runtime's boto3 (copied from this environment, compiled like the runtime's own) and a
    # precompiled copy of the host build.
    site = work / "runtime-site"
    if not (args.reuse and site.exists()):
        shutil.rmtree(site, ignore_errors=True)
        site_dir(site, RUNTIME_PROVIDED, copy=True)
        compile_tree(python312, site)
    pyc_dir = work / arch / "build-pyc"
    shutil.rmtree(pyc_dir, ignore_errors=True)
    shutil.copytree(host_dir, pyc_dir, ignore=shutil.ignore_patterns("__pycache__"))
    compile_tree(python312, pyc_dir)

    host_fns, pyc_fns, arm_fns = built_functions(host_dir), built_functions(pyc_dir), built_functions(arm_dir)
    figures = []
    with tempfile.TemporaryDirectory(prefix="coldstart-") as tmp:
        for name, fn in host_fns.items():
            print(f"measuring {name} ...", file=sys.stderr, flush=True)
            arm = arm_fns[name]
            size = tree_size(arm.code_dir) + sum(tree_size(d) for d in arm.layer_dirs)
            figures.append(measure(fn, pyc_fns[name], size, python312, site, Path(tmp), args.runs, args.threshold))

    print(report(figures, args.runs, load, arch))

    # Top-level entries that the runtime's boto3 and its dependencies already put on sys.path.
    def key(name: str) -> str:
        return re.split(r"-\d", name)[0].removesuffix(".py").lower()

    provided = {key(top.name) for dist in distributions(RUNTIME_PROVIDED) for top in top_levels(dist)}
    for layer in sorted({d for fn in arm_fns.values() for d in fn.layer_dirs}):
        entries = biggest(layer / "python", 1000)
        duplicate = sum(size for name, size in entries if key(name) in provided)
        print(
            f"\n== {layer.name} (arm64), {mb(tree_size(layer))}, of which {mb(duplicate)} the runtime already provides"
        )
        for name, size in entries[:10]:
            note = "  (the runtime provides it)" if key(name) in provided else ""
            print(f"  {name:<40} {mb(size):>9}{note}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([f.__dict__ for f in figures], indent=2, default=str))
    missed = [
        f for f in figures if f.size > SIZE_LIMIT_MB * MB or f.built_wall > TARGET_MS.get(f.function, float("inf"))
    ]
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
