"""The benchmark's processes: moto's DynamoDB server, the fake upstream and the gateway under uvicorn,
each started from the repository root with its output in files; their CPU and memory from /proc;
stopping them."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.local.child import stop  # shared with gateway-local
from gateway.local.dynamodb import free_port  # the same: one way to find a port on 127.0.0.1

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
MODEL = "bench-model"
UPSTREAM_MODEL = "bench-upstream"
CLK_TCK = os.sysconf("SC_CLK_TCK")
EMULATOR_NICE = 10


class Proc:
    """A child process started from the repository root, its output going to files (a pipe nobody
    reads would fill up and block the gateway, which logs a line per request); its first stdout
    line is JSON when it prints one."""

    def __init__(self, name: str, args: list[str], logdir: Path, python: str = sys.executable,
                 env: dict[str, str] | None = None) -> None:  # fmt: skip
        self.name = name
        self.out_path = logdir / f"{name}.out"
        self.err_path = logdir / f"{name}.err"
        self.out = self.out_path.open("w")
        self.err = self.err_path.open("w")
        self.popen = subprocess.Popen(
            [python, *args], cwd=ROOT, stdout=self.out, stderr=self.err, stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )  # fmt: skip

    @property
    def pid(self) -> int:
        return self.popen.pid

    def first_line(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.popen.poll() is None:
            with self.out_path.open() as f:
                line = f.readline()
            if line.endswith("\n"):
                return json.loads(line)
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start:\n{self.err_path.read_text()[-3000:]}")

    def stop(self) -> None:
        stop(self.popen, 5)
        self.out.close()
        self.err.close()


def wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout} s")
        time.sleep(0.05)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """CPU seconds of a process (all its threads, living or gone), or of one of its threads."""
    path = f"/proc/{pid}/task/{tid}/stat" if tid else f"/proc/{pid}/stat"
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def system_busy() -> float:
    """Seconds of CPU the whole machine spent busy (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return (sum(values[:8]) - idle) / CLK_TCK


def memory_kb(pid: int) -> dict[str, int]:
    found = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                found[name] = int(value.split()[0])
    return found


@dataclass
class Stack:
    upstream_url: str
    gateway_url: str
    key: str
    gateway: Proc
    upstream: Proc
    dynamo: Proc
    procs: list[Proc]
    logdir: Path
    dynamo_endpoint: str = ""
    tables: dict[str, str] = field(default_factory=dict)  # environment variable -> table name

    def stop(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                proc.stop()


def start_stack(args: argparse.Namespace, workdir: Path) -> Stack:
    procs: list[Proc] = []
    try:
        parent = ["--parent", str(os.getpid())]  # no orphans if this process is killed
        dynamo = Proc("dynamodb", ["-m", "lambdas.dynamo_server", "--port", str(free_port()), *parent], workdir)
        procs.append(dynamo)
        up_port = free_port()
        upstream = Proc(
            "upstream",
            ["-m", "bench.fake_upstream", "--port", str(up_port), "--latency-ms", str(args.latency_ms),
             "--chunks", str(args.chunks), "--gap-ms", str(args.gap_ms)],
            workdir,
        )  # fmt: skip
        procs.append(upstream)
        upstream_url = f"http://{HOST}:{up_port}"
        local = dynamo.first_line(60)
        wait_http(upstream_url + "/health", 30)
        catalog = workdir / "bench-catalog.json"
        catalog.write_text(json.dumps(bench_catalog(upstream_url + "/v1"), indent=1))
        gw_port = free_port()
        gateway = Proc(
            "gateway",
            ["-m", "bench.gateway_server", "--port", str(gw_port), "--dynamodb", local["endpoint"],
             "--tables", json.dumps(local["tables"]), "--catalog", str(catalog)],
            workdir,
            env={"PYTHONPATH": os.pathsep.join(filter(None, (args.gateway_path, os.environ.get("PYTHONPATH"))))},
        )  # fmt: skip
        procs.append(gateway)
        ready = gateway.first_line(60)
        if args.pin:
            pin(gateway, dynamo, upstream)
        gateway_url = f"http://{HOST}:{gw_port}"
        wait_http(gateway_url + "/__bench/stats", 30)
        return Stack(upstream_url, gateway_url, ready["key"], gateway, upstream, dynamo, procs, workdir,
                     local["endpoint"], local["tables"])  # fmt: skip
    except BaseException:
        for proc in reversed(procs):
            with contextlib.suppress(Exception):
                proc.stop()
        raise


def pin(gateway: Proc, dynamo: Proc, *others: Proc) -> None:
    """The gateway alone on the first core; everything else (this process included) on the others,
    where the emulator (busy all the time under load) yields to the client and the fake upstream, so
    that their timing stays that of the direct path."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return
    os.sched_setaffinity(gateway.pid, {cores[0]})
    for proc in (dynamo, *others):
        os.sched_setaffinity(proc.pid, set(cores[1:]))
    os.sched_setaffinity(0, set(cores[1:]))
    os.setpriority(os.PRIO_PROCESS, dynamo.pid, EMULATOR_NICE)


def pin_alone(proc: Proc) -> None:
    """Another server on the gateway's core (the peer proxy, which runs when the gateway is idle)."""
    cores = sorted(os.sched_getaffinity(0) | os.sched_getaffinity(proc.pid))
    if len(cores) >= 2:
        os.sched_setaffinity(proc.pid, {cores[0]})


def bench_catalog(base_url: str) -> dict[str, Any]:
    """The extra catalog: one OpenAI-compatible provider on the fake upstream, no limits, one model."""
    return {
        "providers": {
            "benchup": {
                "name": "Benchmark upstream",
                "protocol": "openai",
                "base_url": base_url,
                "key_required": False,
                # the request's bench_id reaches the fake upstream, which times each request by it (a revision
                # that sends only known fields drops it otherwise, and the gateway's own latency goes unmeasured)
                "allow_fields": ["bench_id"],
            }
        },
        "models": [
            {
                "id": MODEL,
                "owned_by": "bench",
                "created": 1767225600,
                "context_length": 262144,  # the 90 KB prompt's bound (a token a byte) fits
                "max_output_tokens": 1024,
                "pricing": {"input": "0.10", "output": "0.40"},
                "offerings": [{"provider": "benchup", "model": UPSTREAM_MODEL}],
            }
        ],
    }
