"""Building the template as `sam build` does (arm64, and once more for this machine), and reading what it built.

Shared by the cold-start benchmark (bench/coldstart.py), `make invoke` (lambdas/invoke.py) and the
build tests: finding python3.12, building (and knowing when a build is still current), the built
template with its intrinsics resolved, and each built function with the environment Lambda gives it.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
SAM = ROOT / "scripts" / "sam"
WORK = ROOT / "build" / "coldstart"  # build/ is gitignored
# What `sam build` reads, hashed into a stamp beside each build so that a build can tell it is current.
BUILD_SOURCES = ("template.yaml", "functions", "layers/gateway")
BUILD_STAMP = ".sources.sha256"
REGION = "us-east-1"
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
    streams: list[str] = field(default_factory=list)  # the DynamoDB streams that invoke it (their Stream)

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
        if event.get("Records"):
            return bool(self.streams) and event["Records"][0].get("eventSource") == "aws:dynamodb"
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
        routes, schedules, streams = [], [], []
        for event in (props.get("Events") or {}).values():
            if event.get("Type") == "Api":
                routes.append((event["Properties"]["Method"].upper(), event["Properties"]["Path"]))
            elif event.get("Type") == "Schedule":
                schedules.append(str(event["Properties"]["Schedule"]))
            elif event.get("Type") == "DynamoDB":
                streams.append(str(event["Properties"]["Stream"]))
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
            streams=streams,
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
