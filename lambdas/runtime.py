"""What Lambda's python3.12 runtime gives a built function, and running one as it runs it.

The runtime's site-packages (boto3 and its dependencies, which the layer leaves out), precompiling,
sizes and machine architectures of a build, and the chat function's run.sh started as the Lambda
Web Adapter starts it, until its readiness check answers.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from gateway.local.child import stop
from gateway.local.dynamodb import free_port
from lambdas.builds import BuiltFunction, lambda_environment

# What the python3.12 runtime provides besides the standard library (boto3 and its dependencies).
RUNTIME_PROVIDED = ("boto3",)
ELF_MACHINES = {0x3E: "x86_64", 0xB7: "arm64"}


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

    It runs in cwd (default workdir) under the command prefix wrap (lambdas/invoke.py's read-only file systems).
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
        stop(process)


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
