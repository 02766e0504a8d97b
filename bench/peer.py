"""A peer proxy measured the way the gateway is: LiteLLM proxy, one worker, no database, in front of the
same fake upstream (issue 13: the gateway should spend at most a fifth of its CPU per request).

LiteLLM lives in a venv of its own outside git (`build/litellm-venv`), installed on first use with
pip. Its `proxy` extra pins two companion packages released in lockstep (`litellm-proxy-extras`,
database migrations, and `litellm-enterprise`) to releases the index may not carry; the install
then takes `litellm` alone, the extra's other requirements, and the newest companions without
their dependencies (so litellm stays at the release asked for). If nothing installs, the benchmark
runs without the peer and says why.

    .venv/bin/python -m bench.peer            # install (if needed) and print the version
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.processes import HOST, MODEL, ROOT, UPSTREAM_MODEL, Proc, cpu_seconds, free_port, memory_kb, wait_http

VENV = ROOT / "build" / "litellm-venv"
VERSION = "1.109.*"  # the release the issue measured
MASTER_KEY = "sk-bench-peer"
COMPANIONS = ("litellm-proxy-extras", "litellm-enterprise")
_EXTRA = re.compile(r"""\s*(?:and\s+)?extra\s*==\s*['"]proxy['"]""")


def _pip(*args: str) -> bool:
    done = subprocess.run([str(VENV / "bin" / "python"), "-m", "pip", "install", "-q", *args],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode:
        print("  pip: " + (done.stderr.strip().splitlines() or ["failed"])[-1], flush=True)
    return done.returncode == 0


def _proxy_requirements() -> list[str]:
    """The `proxy` extra's requirements of the installed litellm, without the companion packages."""
    code = "import importlib.metadata as m, json; print(json.dumps(m.requires('litellm') or []))"
    found = json.loads(subprocess.run([str(VENV / "bin" / "python"), "-c", code], capture_output=True,
                                      text=True, check=True).stdout)  # fmt: skip
    reqs = []
    for req in found:
        name, _, marker = req.partition(";")
        if not _EXTRA.search(marker) or name.strip().startswith(COMPANIONS):
            continue
        marker = _EXTRA.sub("", marker).strip()
        reqs.append(f"{name.strip()} ; {marker}" if marker else name.strip())
    return reqs


def version() -> str | None:
    code = "import importlib.metadata as m; print(m.version('litellm'))"
    try:
        done = subprocess.run([str(VENV / "bin" / "python"), "-c", code], capture_output=True, text=True)
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 and (VENV / "bin" / "litellm").exists() else None


def ensure(spec: str = VERSION) -> str | None:
    """LiteLLM's version, installed into build/litellm-venv if missing; None (and why) if it cannot be."""
    found = version()
    if found and (VENV / ".proxy-installed").exists():
        return found
    print(f"installing LiteLLM proxy {spec} into {VENV.relative_to(ROOT)} (first use; a few minutes) ...", flush=True)
    if not (VENV / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    ok = _pip(f"litellm[proxy]=={spec}")
    if not ok and _pip(f"litellm=={spec}") and _pip(*_proxy_requirements()):
        ok = True
        _pip("--no-deps", *COMPANIONS)  # best effort: the proxy runs without a database
    found = version()
    if not ok or not found:
        print(f"LiteLLM proxy could not be installed: the peer comparison is skipped (see pip's message above; "
              f"delete {VENV.relative_to(ROOT)} to retry)", flush=True)  # fmt: skip
        return None
    (VENV / ".proxy-installed").write_text(found + "\n")
    return found


@dataclass
class Peer:
    name: str
    version: str
    url: str
    key: str
    proc: Proc

    def cpu_seconds(self) -> float:
        """CPU of the proxy's process and its children (a worker, if it forks one)."""
        return sum(cpu_seconds(pid) for pid in _tree(self.proc.pid))

    def memory_mb(self) -> dict[str, float]:
        found = {"VmRSS": 0.0, "VmHWM": 0.0}
        for pid in _tree(self.proc.pid):
            for name, kb in memory_kb(pid).items():
                found[name] += kb / 1024
        return found

    def stop(self) -> None:
        self.proc.stop()


def _tree(pid: int) -> list[int]:
    """A process and its descendants, from /proc/PID/task/*/children."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            continue
    return found


def start_litellm(upstream_url: str, workdir: Path, spec: str = VERSION) -> Peer | None:
    """LiteLLM proxy on a free port, one worker, no database, `bench-model` routed to the fake upstream."""
    found = ensure(spec)
    if found is None:
        return None
    config = workdir / "litellm.yaml"
    config.write_text(
        json.dumps(  # YAML is a superset of JSON
            {
                "model_list": [
                    {
                        "model_name": MODEL,
                        "litellm_params": {
                            "model": f"openai/{UPSTREAM_MODEL}",
                            "api_base": upstream_url + "/v1",
                            "api_key": "none",
                        },
                    }
                ],
                "general_settings": {"master_key": MASTER_KEY},
                "litellm_settings": {"drop_params": True, "telemetry": False},
            },
            indent=1,
        )
    )
    port = free_port()
    env = {"LITELLM_LOG": "ERROR", "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False"}
    proc = Proc(
        "litellm",
        [str(VENV / "bin" / "litellm"), "--config", str(config), "--host", HOST, "--port", str(port),
         "--num_workers", "1"],
        workdir,
        python=str(VENV / "bin" / "python"),
        env=env,
    )  # fmt: skip
    try:
        wait_http(f"http://{HOST}:{port}/health/liveliness", 180)
    except BaseException:
        proc.stop()
        print(f"LiteLLM proxy did not start; the peer comparison is skipped:\n{proc.err_path.read_text()[-2000:]}")
        return None
    return Peer("LiteLLM proxy", found, f"http://{HOST}:{port}", MASTER_KEY, proc)


if __name__ == "__main__":
    print(ensure() or "not installed")
