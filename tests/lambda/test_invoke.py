"""The built functions run the way Lambda runs them, through the Runtime API, without Docker.

- The buffered functions (Python handlers: ModelsFunction, StatsFunction, SweeperFunction) run as
  `make invoke` runs them (lambdas/invoke.py): under the Runtime Interface Emulator that ships inside
  aws-sam-cli, as `aws-lambda-rie python -m awslambdaric app.handler`, from the session's host build
  (tests/support/builds.py, the one test_build.py checks), against moto's server with the template's
  tables, secret and parameter. Each function gets every event in events/ that targets it (by the
  template's Api events, test_build.targets; the sweeper its schedule's event) through one emulator,
  then its first event again. The first call is the cold start: the emulator starts the runtime,
  which imports the handler and then asks the Runtime API for events. Each answer must have the
  status test_build.py expects, every call must be answered by the same runtime process (pid and
  start time), whose init ran once, and the warm repeat must be faster than the cold call.
- The chat function has no Python handler: in Lambda the Web Adapter starts its run.sh. It runs
  here with the layout Lambda gives it: the built function copied to a read-only directory that is
  its working directory and LAMBDA_TASK_ROOT, the built layer (a read-only copy) on PYTHONPATH where
  /opt/python would be, TMPDIR and HOME a fresh directory. As root where a mount namespace may be
  made, the kernel refuses writes outside that directory and /tmp (a probe proves it), and Python
  writes no bytecode setting aside, so a write to the code would fail. The chat events are replayed
  as the adapter forwards them, and the code must be unchanged after.

Without python3.12 or SAM CLI these skip, except under CI=true, where they fail.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lambdas import builds as lambda_build
from lambdas import invoke
from lambdas import rie as lambda_rie
from lambdas import runtime as lambda_runtime
from tests.support.builds import unavailable
from tests.support.lambdas import check_api_response, check_handler_answer, event, targets

ROOT = Path(__file__).resolve().parents[2]
BUFFERED = [name for name, fn in lambda_build.built_functions(ROOT).items() if not fn.web_adapter]


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[invoke.LocalAws]:
    with invoke.local_aws(tmp_path_factory.mktemp("invoke-aws") / "moto.log") as local:
        yield local


@pytest.fixture(scope="module")
def functions(builds: dict[str, Path], aws: invoke.LocalAws) -> dict[str, lambda_build.BuiltFunction]:
    return lambda_build.built_functions(builds["host"], aws.refs)


@pytest.fixture(scope="module")
def sites(python312: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(awslambdaric for python3.12, the runtime's boto3): what the runtime adds to sys.path after the layers."""
    base = tmp_path_factory.mktemp("invoke-sites")
    try:
        client = lambda_rie.runtime_client(base / "awslambdaric", python312)
    except RuntimeError as exc:
        unavailable(str(exc))
    return client, lambda_runtime.site_dir(base / "runtime", lambda_runtime.RUNTIME_PROVIDED, copy=False)


@pytest.fixture(scope="module")
def rie(builds: dict[str, Path]) -> Path:
    """The emulator in the aws-sam-cli that the builds installed (scripts/sam)."""
    found = lambda_rie.rie_binary()
    if found is None:
        unavailable(f"no aws-lambda-rie-{lambda_build.host_architecture()} in .venv-sam's aws-sam-cli")
    return found


@dataclasses.dataclass
class Run:
    calls: list[tuple[str, lambda_rie.Invocation]]  # (event name, its invocation), in order: the first is cold
    inits: list[float]  # the runtime's init durations (ms), one per cold start
    cmdline: list[str]  # the runtime process's, seen while it ran
    cwd: str
    logs: str


@pytest.fixture(scope="module")
def runs(
    python312: str,
    functions: dict[str, lambda_build.BuiltFunction],
    sites: tuple[Path, Path],
    rie: Path,
    aws: invoke.LocalAws,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Run]:
    """{function: its Run}: each buffered function's events, then its first again, through one emulator."""
    found = {}
    for name in BUFFERED:
        fn = functions[name]
        names = [event for function, event in targets() if function == name]
        workdir = tmp_path_factory.mktemp(f"rie-{name}")
        with lambda_rie.emulator(fn, python312, sites, workdir, aws.environment(), rie=rie) as emulator:
            calls = [(name_, emulator.invoke(event(name_, aws.key))) for name_ in [*names, names[0]]]
            runtime = calls[0][1].runtime
            assert runtime is not None, f"{name}: no runtime process under the emulator\n{emulator.logs()[-4000:]}"
            proc = Path(f"/proc/{runtime[0]}")
            cmdline = proc.joinpath("cmdline").read_bytes().decode().split("\0")[:-1]
            found[name] = Run(calls, emulator.inits(), cmdline, os.readlink(proc / "cwd"), emulator.logs())
    return found


@pytest.mark.parametrize(
    ("function", "event_name"), [pair for pair in targets() if pair[0] in BUFFERED], ids=lambda value: value
)
def test_function_answers_event_through_the_runtime_api(
    runs: dict[str, Run], aws: invoke.LocalAws, function: str, event_name: str
) -> None:
    run = runs[function]
    invocation = next(call for name, call in run.calls if name == event_name)
    assert not invocation.error, f"{invocation.payload}\n{run.logs[-4000:]}"
    check_handler_answer(event_name, event(event_name, aws.key), invocation.payload, aws.key, run.logs[-4000:])


@pytest.mark.parametrize("function", BUFFERED)
def test_runtime_is_lambdas_and_warm_calls_reuse_it(
    runs: dict[str, Run], functions: dict[str, lambda_build.BuiltFunction], function: str
) -> None:
    run, fn = runs[function], functions[function]
    assert run.cmdline[1:] == ["-S", "-m", "awslambdaric", fn.handler], run.cmdline
    assert Path(run.cmdline[0]).name.startswith("python3.12"), run.cmdline
    assert run.cwd == str(fn.code_dir)
    runtimes = {call.runtime for _, call in run.calls}
    assert len(runtimes) == 1, f"{function}: calls answered by different runtime processes: {runtimes}"
    assert len(run.inits) == 1 and run.inits[0] > 0, f"{function}: one cold start expected:\n{run.logs[-4000:]}"
    (first, cold), (again, warm) = run.calls[0], run.calls[-1]
    assert again == first and len(run.calls) >= 2
    assert warm.seconds < cold.seconds, f"{function}: warm {warm.seconds:.3f} s, cold {cold.seconds:.3f} s"
    if isinstance(cold.payload, dict) and "statusCode" in cold.payload:
        assert warm.payload["statusCode"] == cold.payload["statusCode"]
    elif "transactions" in cold.payload:  # the same stream batch delivered again is not counted again
        assert (cold.payload, warm.payload) == ({"transactions": 1}, {"transactions": 0})
    else:
        assert warm.payload == cold.payload


# --- the chat function's run.sh with Lambda's layout --------------------------------------------


def set_writable(paths: list[Path], writable: bool) -> None:
    """chmod -R a-w (or u+w again): what a non-root process sees of /var/task and /opt in Lambda."""
    for top in paths:
        for path in [top, *top.rglob("*")]:
            if not path.is_symlink():
                mode = path.stat().st_mode
                os.chmod(path, mode | stat.S_IWUSR if writable else mode & ~0o222)


def snapshot(paths: list[Path]) -> dict[str, tuple[int, int, int]]:
    """Every entry under paths, with its mode, size and modification time: any write changes it."""
    found = {}
    for top in paths:
        for path in [top, *top.rglob("*")]:
            info = path.lstat()
            found[str(path)] = (info.st_mode, info.st_size, info.st_mtime_ns)
    return found


def test_chat_run_sh_under_lambdas_layout(
    python312: str,
    functions: dict[str, lambda_build.BuiltFunction],
    sites: tuple[Path, Path],
    aws: invoke.LocalAws,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    (built,) = [fn for fn in functions.values() if fn.web_adapter]
    work = tmp_path_factory.mktemp("chat-lambda")
    task = work / "var-task"  # Lambda's /var/task
    shutil.copytree(built.code_dir, task, symlinks=True)
    layers = []
    for index, layer in enumerate(built.layer_dirs):  # each layer's python/ is what /opt/python holds
        layers.append(work / f"opt-{index}")
        shutil.copytree(layer, layers[-1], symlinks=True)
    fn = dataclasses.replace(built, code_dir=task, layer_dirs=layers)
    runtime = sites[1]
    code = [task, *layers]
    env, wrap = lambda_rie.lambda_tmp(work, [*fn.python_path, runtime])
    enforced = bool(wrap) or os.geteuid() != 0  # root ignores file modes: only the namespace binds it
    extra = {**env, **aws.environment(), "BUILTIN_TOKEN_DELAY": "0"}
    if enforced:
        extra["PYTHONDONTWRITEBYTECODE"] = ""  # Python tries to write main.py's bytecode, as in Lambda: refused
    set_writable(code, False)
    before = snapshot(code)
    try:
        if enforced:
            probe = 'import sys\nopen(sys.argv[1], "w")'
            refused = subprocess.run(
                [*wrap, python312, "-S", "-c", probe, str(task / "written")],
                capture_output=True,
                text=True,
                check=False,
            )
            assert refused.returncode != 0 and ("Read-only" in refused.stderr or "Permission" in refused.stderr)
            wrote = subprocess.run([*wrap, python312, "-S", "-c", probe, env["TMPDIR"] + "/written"], check=False)
            assert wrote.returncode == 0, "the function's /tmp must stay writable"
        chat_events = [name for function, name in targets() if function == fn.name]
        with lambda_runtime.web_adapter_app(fn, python312, runtime, work, extra, cwd=task, wrap=wrap) as (
            process,
            url,
            log,
        ):
            lambda_runtime.wait_ready(process, url, log)
            for name in chat_events:
                sent = event(name, aws.key)
                answer = invoke.replay(url, sent, timeout=20)
                logs = log.read_text(errors="replace")[-4000:]
                check_api_response(name, sent, answer["statusCode"], answer["headers"], answer["body"], logs)
            # run.sh execs python, which execs python3.12: one process, whose files tell where it runs from.
            assert os.readlink(f"/proc/{process.pid}/cwd") == str(task)
            mapped = Path(f"/proc/{process.pid}/maps").read_text()
            libraries = {line.split()[-1] for line in mapped.splitlines() if line.endswith(".so")}
            assert any(lib.startswith(str(layers[0])) for lib in libraries), "compiled modules come from the layer"
            assert not any(lib.startswith(str(ROOT)) for lib in libraries), "nothing from the repository's venvs"
        after = snapshot(code)
    finally:
        set_writable(code, True)
    changed = sorted(path for path in before.keys() | after.keys() if before.get(path) != after.get(path))
    assert changed == [], f"the code directory or the layer changed: {changed[:20]}"
