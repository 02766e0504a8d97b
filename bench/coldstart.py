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
(tests/lambda/test_build.py checks that both builds hold the same Python files). Expect Lambda's figures
to differ with its CPU share (MemorySize) and the machine's load; the load average is printed.

Building and reading builds is lambdas/builds.py; the runtime's site-packages and running run.sh as
the Web Adapter does is lambdas/runtime.py (both shared with lambdas/invoke.py and the tests).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from lambdas.builds import (
    NO_AWS,
    WORK,
    BuiltFunction,
    built_functions,
    ensure_build,
    find_python312,
    host_architecture,
    lambda_environment,
)
from lambdas.runtime import (
    MB,
    RUNTIME_PROVIDED,
    biggest,
    compile_tree,
    distributions,
    mb,
    site_dir,
    top_levels,
    tree_size,
    wait_ready,
    web_adapter_app,
)

# The targets on this machine: the import of the handler module, and the unzipped size.
TARGET_MS = {"ModelsFunction": 300, "StatsFunction": 300, "ChatFunction": 500}
SIZE_LIMIT_MB = 25
WEB_ADAPTER_NOTE = "the Lambda Web Adapter layer (AWS's, ~5 MB: one Rust binary) is not included"
MARK = "COLDSTART-RESULT "
FLOOR = "fastapi,mangum,boto3"  # issue 23: init is judged against the bare stack's import on the same machine
CHILD = """
import sys, time
wall, cpu = time.perf_counter(), time.process_time()
import importlib
for name in sys.argv[1].split(","):
    importlib.import_module(name)
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
sys.stdout.flush()
import json
print({mark!r} + json.dumps([wall * 1000, cpu * 1000]), flush=True)
"""


def child_env(fn: BuiltFunction, site: Path) -> dict[str, str]:
    path = os.pathsep.join(map(str, [*fn.python_path, site]))
    return lambda_environment(fn, {"PYTHONPATH": path, "AWS_ENDPOINT_URL": NO_AWS})


def import_once(
    python312: str, fn: BuiltFunction, site: Path, *, importtime: bool = False, modules: str | None = None
) -> tuple[float, float, str]:
    """(wall ms, CPU ms, stderr) of importing the function's module (or `modules`, comma-separated) in a fresh
    process (-S: only our sys.path)."""
    target = modules or fn.module
    args = [python312, "-S", *(["-X", "importtime"] if importtime else []), "-c", CHILD.format(mark=MARK), target]
    result = subprocess.run(
        args, cwd=fn.code_dir, env=child_env(fn, site), capture_output=True, text=True, timeout=120, check=False
    )
    for line in result.stdout.splitlines():
        if line.startswith(MARK):
            wall, cpu = json.loads(line[len(MARK) :])
            return wall, cpu, result.stderr
    raise RuntimeError(f"importing {fn.module} for {fn.name} failed ({result.returncode}):\n{result.stderr[-3000:]}")


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
    floor_built: float = 0.0  # the bare stack (FLOOR) in the same process layout: what no gateway code can go below
    floor_pyc: float = 0.0
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
    built, compiled, floor_built, floor_pyc = [], [], [], []
    import_once(python312, fn_pyc, site)  # warm the page cache once for both variants
    for _ in range(runs):  # interleaved, so a change in the machine's load hits every figure alike
        built.append(import_once(python312, fn, site)[:2])
        compiled.append(import_once(python312, fn_pyc, site)[:2])
        floor_built.append(import_once(python312, fn, site, modules=FLOOR)[0])
        floor_pyc.append(import_once(python312, fn_pyc, site, modules=FLOOR)[0])
    rows = parse_importtime(import_once(python312, fn_pyc, site, importtime=True)[2])
    figures = Figures(
        function=fn.name,
        module=fn.module,
        built_wall=statistics.median(w for w, _ in built),
        built_cpu=statistics.median(c for _, c in built),
        pyc_wall=statistics.median(w for w, _ in compiled),
        pyc_cpu=statistics.median(c for _, c in compiled),
        size=size,
        floor_built=statistics.median(floor_built),
        floor_pyc=statistics.median(floor_pyc),
        packages=by_package(rows)[:12],
        tree=import_tree(rows, threshold_ms, depth=4),
    )
    if fn.web_adapter:
        figures.ready_built = statistics.median(ready_once(python312, fn, site, workdir) for _ in range(runs))
        figures.ready_pyc = statistics.median(ready_once(python312, fn_pyc, site, workdir) for _ in range(runs))
    return figures


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
        f"floor = `import {FLOOR.replace(',', ', ')}` alone, in the same process layout and the same runs: the",
        "bare stack's own init, which no gateway code can go below (issue 23 judges init against it).",
        "",
        f"{'function':<16} {'module':<6} {'init as built':>18} {'init with .pyc':>18} {'floor built / .pyc':>19} "
        f"{'target':>7} {'size':>9} {'limit':>6}",
        f"{'':<16} {'':<6} {'wall / CPU ms':>18} {'wall / CPU ms':>18} {'wall ms':>19}",
    ]
    for f in figures:
        target = TARGET_MS.get(f.function)
        verdict = []
        if target is not None:
            verdict.append("init ok" if f.built_wall <= target else "init OVER")
        verdict.append("size ok" if f.size <= SIZE_LIMIT_MB * MB else "size OVER")
        out.append(
            f"{f.function:<16} {f.module:<6} {f'{f.built_wall:.0f} / {f.built_cpu:.0f}':>18} "
            f"{f'{f.pyc_wall:.0f} / {f.pyc_cpu:.0f}':>18} {f'{f.floor_built:.0f} / {f.floor_pyc:.0f}':>19} "
            f"{f'{target} ms' if target else '-':>7} "
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
