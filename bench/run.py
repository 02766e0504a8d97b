"""The gateway's performance benchmark, in one command:

    .venv/bin/python -m bench.run            # the whole benchmark (about 3 minutes), writes bench/results/latest.md
    .venv/bin/python -m bench.run --quick    # a ~30 s smoke run, writes bench/results/quick.md
    .venv/bin/python -m bench.run --profile  # cProfile of the gateway under load, writes bench/results/profile.txt

It starts four processes on 127.0.0.1: moto's DynamoDB server (bench.dynamo_server), a fake
upstream with fixed latency and fixed gaps between stream chunks (bench.fake_upstream), the
real gateway app under uvicorn, instrumented from outside (bench.gateway_server), and this
process, the load generator (a minimal keep-alive HTTP/1.1 client on asyncio streams, so the
client's own overhead is small and identical on both paths).

For each mode (whole, streamed) and concurrency (1, 16, 64) it sends the same requests
straight to the upstream and then through the gateway, and reports the gateway's added
latency and added time to first token as differences of percentiles (p50, p90, p99 of the
gateway path minus the same percentile of the direct path), requests per second, the
gateway's CPU milliseconds per request (/proc/PID/stat), DynamoDB round trips per request and
the time spent waiting on the emulator, and the gateway's peak memory. A soak then brings the
gateway to 10,000 requests after warm-up and samples its resident memory along the way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
README = ROOT / "bench" / "README.md"
HOST = "127.0.0.1"
MODEL = "bench-model"
UPSTREAM_MODEL = "bench-upstream"
PROMPT = "Say hello to the benchmark, briefly."
MAX_TOKENS = 64
CLK_TCK = os.sysconf("SC_CLK_TCK")
CONTENT = re.compile(rb'"content":"[^"]')
REQUEST_TIMEOUT = 60.0
IDLE_REOPEN = 3.0  # seconds: reconnect rather than reuse a connection the server may be closing

# (mode, concurrency, measured requests) per level; each level warms up first. Sized for what the
# local DynamoDB (moto, ~70 ms of CPU per gateway request) lets through in the 5-minute budget.
FULL_PLAN = [
    ("whole", 1, 100),
    ("stream", 1, 100),
    ("whole", 16, 200),
    ("stream", 16, 200),
    ("whole", 64, 256),
    ("stream", 64, 256),
]
QUICK_PLAN = [
    ("whole", 1, 20),
    ("stream", 1, 20),
    ("whole", 16, 32),
    ("stream", 16, 32),
    ("whole", 64, 64),
    ("stream", 64, 64),
]
BUDGET_SECONDS = 280.0  # the soak stops short of SOAK_TARGET rather than run past this
QUICK_BUDGET_SECONDS = 60.0
SOAK_TARGET = 10_000  # gateway requests after the warm-up memory sample
QUICK_SOAK_TARGET = 600
SOAK_CONCURRENCY = 16
SOAK_SEGMENT = 250  # one memory sample per segment
EMULATOR_NICE = 10
KEY_CACHE_SECONDS = 5.0  # the gateway's default KEY_CACHE_SECONDS

# The targets, in milliseconds.
TARGET_ADDED_P50_C1 = 3.0
TARGET_ADDED_P99 = {1: 10.0, 16: 30.0, 64: 100.0}
TARGET_TTFT_P50 = 5.0
TARGET_DDB_CALLS = 2
TARGET_SECONDS = 300.0
MEMORY_GROWTH_LIMIT_MB = 5.0  # "no growth": the soak's RSS within this of its first sample


# --- processes --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Proc:
    """A child process started from the repository root, its output going to files (a pipe nobody
    reads would fill up and block the gateway, which logs a line per request); its first stdout
    line is JSON when it prints one."""

    def __init__(self, name: str, args: list[str], logdir: Path) -> None:
        self.name = name
        self.out_path = logdir / f"{name}.out"
        self.err_path = logdir / f"{name}.err"
        self.out = self.out_path.open("w")
        self.err = self.err_path.open("w")
        self.popen = subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, stdout=self.out, stderr=self.err, stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
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
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
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

    def stop(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                proc.stop()


def start_stack(args: argparse.Namespace, workdir: Path) -> Stack:
    procs: list[Proc] = []
    try:
        dynamo = Proc("dynamodb", ["-m", "bench.dynamo_server", "--port", str(free_port())], workdir)
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
        )  # fmt: skip
        procs.append(gateway)
        ready = gateway.first_line(60)
        if args.pin:
            pin(gateway, dynamo, upstream)
        gateway_url = f"http://{HOST}:{gw_port}"
        wait_http(gateway_url + "/__bench/stats", 30)
        return Stack(upstream_url, gateway_url, ready["key"], gateway, upstream, dynamo, procs, workdir)
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


def bench_catalog(base_url: str) -> dict[str, Any]:
    """The extra catalog: one OpenAI-compatible provider on the fake upstream, no limits, one model."""
    return {
        "providers": {
            "benchup": {
                "name": "Benchmark upstream",
                "protocol": "openai",
                "base_url": base_url,
                "key_required": False,
            }
        },
        "models": [
            {
                "id": MODEL,
                "owned_by": "bench",
                "created": 1767225600,
                "context_length": 32768,
                "max_output_tokens": 1024,
                "pricing": {"input": "0.10", "output": "0.40"},
                "offerings": [{"provider": "benchup", "model": UPSTREAM_MODEL}],
            }
        ],
    }


# --- the client -------------------------------------------------------------------------------


@dataclass(slots=True)
class Result:
    ok: bool
    total: float  # seconds to the whole body (whole) or to `data: [DONE]` (stream)
    first: float  # seconds to the first content chunk (stream); = total for whole answers
    error: str | None = None
    sent: float = 0.0  # perf_counter when the request was written


class Conn:
    """One keep-alive HTTP/1.1 connection: one request at a time, reconnecting when the server closes."""

    def __init__(self, host: str, port: int, prefix: bytes) -> None:
        self.host, self.port, self.prefix = host, port, prefix
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.used = 0.0  # when the last response ended: uvicorn closes connections idle for 5 s

    async def open(self) -> None:
        self.used = time.monotonic()
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(self, payload: bytes, bench_id: str | None) -> Result:
        if self.writer is not None and time.monotonic() - self.used > IDLE_REOPEN:
            self.close()
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        head = self.prefix + b"content-length: %d\r\n" % len(payload)
        if bench_id is not None:
            head += b"x-bench-id: " + bench_id.encode() + b"\r\n"
        reader = self.reader
        t0 = time.perf_counter()
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                self.writer.write(head + b"\r\n" + payload)
                raw = await reader.readuntil(b"\r\n\r\n")
                lines = raw.split(b"\r\n")
                status = int(lines[0].split(b" ", 2)[1])
                length, chunked, close = None, False, False
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"transfer-encoding":
                        chunked = b"chunked" in value.lower()
                    elif name == b"connection":
                        close = value.strip().lower() == b"close"
                if length is not None:
                    body = await reader.readexactly(length)
                    total = time.perf_counter() - t0
                    ok = status == 200 and b'"choices"' in body
                    result = Result(ok, total, total, None if ok else f"HTTP {status}: {body[:300]!r}")
                elif chunked:
                    first = None
                    tail = b""
                    error = None
                    while True:
                        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                        if size == 0:
                            await reader.readuntil(b"\r\n")
                            break
                        data = (await reader.readexactly(size + 2))[:-2]
                        if first is None and CONTENT.search(data):
                            first = time.perf_counter() - t0
                        if b'"error"' in data and error is None:
                            error = data[:300].decode(errors="replace")
                        tail = (tail + data)[-64:]
                    total = time.perf_counter() - t0
                    ok = status == 200 and error is None and first is not None and tail.endswith(b"data: [DONE]\n\n")
                    if not ok and error is None:
                        error = f"HTTP {status}, stream ended with {tail!r}"
                    result = Result(ok, total, first if first is not None else total, error)
                else:
                    body = await reader.read()
                    total = time.perf_counter() - t0
                    result = Result(False, total, total, f"HTTP {status} without a length: {body[:300]!r}")
                    close = True
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError) as exc:
            self.close()
            return Result(False, time.perf_counter() - t0, 0.0, f"{type(exc).__name__}: {exc}", t0)
        result.sent = t0
        self.used = time.monotonic()
        if close:
            self.close()
        return result


def request_prefix(url: str, path: str, key: str | None) -> tuple[str, int, bytes]:
    hostport = url.split("://", 1)[1]
    host, port = hostport.split(":")
    head = f"POST {path} HTTP/1.1\r\nhost: {hostport}\r\ncontent-type: application/json\r\n"
    if key:
        head += f"authorization: Bearer {key}\r\n"
    return host, int(port), head.encode()


@dataclass(frozen=True)
class Body:
    """A request body, plain or carrying a `bench_id` (an unknown field: the gateway passes it through,
    so the fake upstream can tell when it saw each request)."""

    plain: bytes
    before: bytes
    after: bytes

    def tagged(self, bench_id: str) -> bytes:
        return self.before + bench_id.encode() + self.after


def payload(model: str, stream: bool) -> Body:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": MAX_TOKENS}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}  # what the gateway asks the upstream for anyway
    plain = json.dumps(body, separators=(",", ":")).encode()
    before, after = json.dumps({**body, "bench_id": "@"}, separators=(",", ":")).encode().split(b"@")
    return Body(plain, before, after)


async def drive(conns: list[Conn], n: int, body: Body, tag: str | None) -> list[Result]:
    """Send n requests over the connections, each connection one request at a time."""
    results: list[Result | None] = [None] * n
    counter = iter(range(n))

    async def worker(conn: Conn) -> None:
        for i in counter:
            if tag:
                bench_id = f"{tag}-{i}"
                results[i] = await conn.request(body.tagged(bench_id), bench_id)
            else:
                results[i] = await conn.request(body.plain, None)

    await asyncio.gather(*(worker(c) for c in conns))
    return results  # type: ignore[return-value]


# --- measuring --------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), interpolated between closest ranks."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


@dataclass
class PathRun:
    """One path (direct or gateway) at one level: its results and the counters around them."""

    results: list[Result]
    wall: float
    cpu: dict[str, float] = field(default_factory=dict)  # process -> CPU seconds during the run
    stats_before: dict[str, Any] = field(default_factory=dict)
    stats_after: dict[str, Any] = field(default_factory=dict)
    records: dict[str, list[float]] = field(default_factory=dict)  # the gateway's, by bench id
    upstream: dict[str, list[float]] = field(default_factory=dict)  # the fake upstream's, by bench id
    tag: str | None = None

    @property
    def ok(self) -> list[Result]:
        return [r for r in self.results if r.ok]

    @property
    def errors(self) -> list[Result]:
        return [r for r in self.results if not r.ok]

    @property
    def rps(self) -> float:
        return len(self.results) / self.wall if self.wall else float("nan")


# A gateway record (bench.gateway_server): DynamoDB calls, ms on the wire, ms waited; the same three
# at the request's first body byte; then when the gateway got the request, sent its first body byte
# and finished (perf_counter seconds, the same clock as this process's).
CALLS, WIRE, WAIT, CALLS_FB, WIRE_FB, WAIT_FB, T_IN, T_FB, T_OUT = range(9)


@dataclass
class Level:
    mode: str
    conc: int
    n: int
    direct: PathRun
    gateway: PathRun
    hwm_mb: float
    rss_mb: float
    tag: str

    @property
    def stream(self) -> bool:
        return self.mode == "stream"

    def lat(self, run: PathRun) -> list[float]:
        return [r.total * 1000 for r in run.ok]

    def ttft(self, run: PathRun) -> list[float]:
        return [r.first * 1000 for r in run.ok]

    def pairs(self) -> list[tuple[Result, list[float]]]:
        found = []
        for i, r in enumerate(self.gateway.results):
            rec = self.gateway.records.get(f"{self.gateway.tag}-{i}")
            if r.ok and rec is not None:
                found.append((r, rec))
        return found

    def own(self, run: PathRun, first: bool) -> list[float]:
        """Per request, ms: what the client saw minus what the upstream took (from when it got the
        request to its last chunk, or to its first for TTFT) minus, through the gateway, the time the
        request waited for DynamoDB. Direct, that is the client's and loopback's own floor."""
        gateway = run is self.gateway
        found = []
        for i, r in enumerate(run.results):
            bench_id = f"{run.tag}-{i}"
            up = run.upstream.get(bench_id)
            rec = run.records.get(bench_id) if gateway else [0.0] * 9
            if not r.ok or up is None or rec is None:
                continue
            if first:
                found.append((r.first - (up[1] - up[0])) * 1000 - rec[WAIT_FB])
            else:
                found.append((r.total - (up[2] - up[0])) * 1000 - rec[WAIT])
        return found

    def added(self, q: float) -> float:
        """Side by side: the gateway path's percentile minus the direct path's, DynamoDB included."""
        return pct(self.lat(self.gateway), q) - pct(self.lat(self.direct), q)

    def added_ttft(self, q: float) -> float:
        return pct(self.ttft(self.gateway), q) - pct(self.ttft(self.direct), q)

    def own_added(self, q: float) -> float:
        """Per request: the gateway's own added latency, without upstream time or DynamoDB wait."""
        return pct(self.own(self.gateway, False), q)

    def own_ttft(self, q: float) -> float:
        return pct(self.own(self.gateway, True), q)

    def floor(self, q: float) -> float:
        return pct(self.own(self.direct, False), q)

    def delta(self, name: str) -> Any:
        a, b = self.gateway.stats_after, self.gateway.stats_before
        if isinstance(a[name], dict):
            return {k: a[name].get(k, 0) - b[name].get(k, 0) for k in a[name]}
        return a[name] - b[name]

    @property
    def ddb_calls(self) -> float:
        return sum(self.delta("ops").values()) / self.n

    @property
    def ddb_wire_ms(self) -> float:
        return sum(self.delta("op_http_ms").values()) / self.n

    @property
    def ddb_wait_ms(self) -> float:
        pairs = self.pairs()
        return sum(rec[WAIT] for _, rec in pairs) / len(pairs) if pairs else float("nan")

    @property
    def botocore_cpu_ms(self) -> float:
        return sum(self.delta("op_cpu_ms").values()) / self.n

    @property
    def max_calls(self) -> int:
        return int(max((rec[CALLS] for _, rec in self.pairs()), default=0))

    @property
    def over_two(self) -> float:
        pairs = self.pairs()
        return sum(1 for _, rec in pairs if rec[CALLS] > 2) / len(pairs) if pairs else float("nan")

    @property
    def cpu_ms(self) -> float:
        return self.gateway.cpu["gateway"] * 1000 / self.n


class Bench:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.direct_target = request_prefix(stack.upstream_url, "/v1/chat/completions", None)
        self.gateway_target = request_prefix(stack.gateway_url, "/v1/chat/completions", stack.key)

    def stats(self) -> dict[str, Any]:
        return get_json(self.stack.gateway_url + "/__bench/stats")

    def cpu(self) -> dict[str, float]:
        s = self.stack
        found = {p.name: cpu_seconds(p.pid) for p in (s.gateway, s.dynamo, s.upstream)}
        found["gateway_loop"] = cpu_seconds(s.gateway.pid, s.gateway.pid)  # the main thread runs the event loop
        return found

    def own_cpu(self) -> float:
        """CPU seconds of the benchmark's own processes (this one included)."""
        t = os.times()
        cpu = self.cpu()
        return cpu["gateway"] + cpu["dynamodb"] + cpu["upstream"] + t.user + t.system

    async def path(self, target: tuple[str, int, bytes], body: Body, conc: int, n: int, tag: str | None,
                   warm: int) -> PathRun:  # fmt: skip
        host, port, prefix = target
        conns = [Conn(host, port, prefix) for _ in range(conc)]
        await asyncio.gather(*(c.open() for c in conns))
        try:
            if warm:
                await drive(conns, warm, body, None)
            stats_before = self.stats()
            cpu = self.cpu()
            t0 = time.perf_counter()
            results = await drive(conns, n, body, tag)
            wall = time.perf_counter() - t0
            cpu_after = self.cpu()
            stats_after = self.stats()
        finally:
            for c in conns:
                c.close()
        used = {name: cpu_after[name] - cpu[name] for name in cpu}
        upstream = get_json(self.stack.upstream_url + "/__bench/records")
        return PathRun(results, wall, used, stats_before, stats_after, upstream=upstream, tag=tag)

    async def level(self, mode: str, conc: int, n: int) -> Level:
        stream = mode == "stream"
        tag = f"{mode}{conc}"
        direct = await self.path(self.direct_target, payload(UPSTREAM_MODEL, stream), conc, n, "d" + tag, 2 * conc + 10)
        gateway = await self.path(self.gateway_target, payload(MODEL, stream), conc, n, tag, min(conc, 16) + 4)
        gateway.records = get_json(self.stack.gateway_url + "/__bench/records")
        mem = memory_kb(self.stack.gateway.pid)
        return Level(mode, conc, n, direct, gateway, mem["VmHWM"] / 1024, mem["VmRSS"] / 1024, tag)

    async def warm_up(self, n: int) -> None:
        """Connections, caches and code paths: requests of each kind before anything is measured."""
        for stream in (False, True):
            await self.path(self.gateway_target, payload(MODEL, stream), 8, 0, None, n)
            await self.path(self.direct_target, payload(UPSTREAM_MODEL, stream), 8, 0, None, n)
        get_json(self.stack.gateway_url + "/__bench/records")

    def memory_sample(self, since: int) -> dict[str, float]:
        found = get_json(self.stack.gateway_url + "/__bench/objects")
        return {
            "requests": self.stats()["requests"] - since,
            "rss_mb": found["VmRSS"] / 1024,
            "objects": found["objects"],
        }

    async def soak(self, since: int, total: int, deadline: float, samples: list[dict[str, float]]) -> int:
        """Whole and streamed requests through the gateway, in segments, until `total` were served
        since `since` or the next segment would end after `deadline` (time.monotonic())."""
        errors = 0
        stream = False
        last = 0.0
        while (served := self.stats()["requests"] - since) < total:
            if time.monotonic() + last * 1.2 > deadline:
                break
            n = min(SOAK_SEGMENT, total - served)
            t0 = time.monotonic()
            run = await self.path(self.gateway_target, payload(MODEL, stream), SOAK_CONCURRENCY, n, None, 0)
            last = time.monotonic() - t0
            errors += len(run.errors)
            stream = not stream
            samples.append({**self.memory_sample(since), "phase": "soak"})
        return errors


# --- reporting --------------------------------------------------------------------------------


def f1(x: float) -> str:
    return "n/a" if x != x else f"{x:.1f}"


def f2(x: float) -> str:
    return "n/a" if x != x else f"{x:.2f}"


def trio(fn: Any, qs: tuple[float, ...] = (50, 90, 99)) -> str:
    return " / ".join(f1(fn(q)) for q in qs)


def main_table(levels: list[Level]) -> str:
    head = (
        "| mode | conc | requests | req/s direct / gateway | side by side: added latency p50 / p90 / p99 ms "
        "| side by side: added TTFT p50 / p90 / p99 ms | DynamoDB calls/req | DynamoDB wait ms/req (on the wire) "
        "| gateway's own added latency p50 / p90 / p99 ms | gateway's own added TTFT p50 / p90 / p99 ms "
        "| gateway CPU ms/req | gateway peak RSS MB | errors |\n"
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n"
    )
    rows = []
    for lv in levels:
        errors = len(lv.direct.errors) + len(lv.gateway.errors)
        rows.append(
            f"| {lv.mode} | {lv.conc} | {lv.n} | {lv.direct.rps:.0f} / {lv.gateway.rps:.1f} "
            f"| {trio(lv.added)} | {trio(lv.added_ttft) if lv.stream else '-'} | {f2(lv.ddb_calls)} "
            f"| {f1(lv.ddb_wait_ms)} ({f1(lv.ddb_wire_ms)}) | {trio(lv.own_added)} "
            f"| {trio(lv.own_ttft) if lv.stream else '-'} "
            f"| {f1(lv.cpu_ms)} | {lv.hwm_mb:.0f} | {errors} |"
        )
    return head + "\n".join(rows) + "\n"


def detail_table(levels: list[Level]) -> str:
    head = (
        "| mode | conc | direct p50 / p99 ms | gateway p50 / p99 ms | direct TTFT p50 / p99 ms "
        "| gateway TTFT p50 / p99 ms | client and loopback floor, direct, p50 / p99 ms "
        "| DynamoDB calls per 1,000 requests | most calls in one request (share > 2) "
        "| gateway CPU ms/req: event loop / other threads | botocore CPU ms/req "
        "| emulator ms per call | moto CPU ms/req | upstream CPU ms/req | GC ms/req |\n"
        "|---|--:|--:|--:|--:|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|\n"
    )
    rows = []
    for lv in levels:
        d, g = lv.lat(lv.direct), lv.lat(lv.gateway)
        dt, gt = lv.ttft(lv.direct), lv.ttft(lv.gateway)
        ops = lv.delta("ops")
        calls = sum(ops.values())
        per_call = sum(lv.delta("op_http_ms").values()) / calls if calls else float("nan")
        by_op = ", ".join(f"{k} {v * 1000 / lv.n:.0f}" for k, v in sorted(ops.items()) if v)
        loop = lv.gateway.cpu["gateway_loop"]
        rows.append(
            f"| {lv.mode} | {lv.conc} | {f1(pct(d, 50))} / {f1(pct(d, 99))} | {f1(pct(g, 50))} / {f1(pct(g, 99))} "
            f"| {(f1(pct(dt, 50)) + ' / ' + f1(pct(dt, 99))) if lv.stream else '-'} "
            f"| {(f1(pct(gt, 50)) + ' / ' + f1(pct(gt, 99))) if lv.stream else '-'} "
            f"| {f1(lv.floor(50))} / {f1(lv.floor(99))} "
            f"| {by_op} | {lv.max_calls} ({lv.over_two:.1%}) "
            f"| {f1(loop * 1000 / lv.n)} / {f1((lv.gateway.cpu['gateway'] - loop) * 1000 / lv.n)} "
            f"| {f2(lv.botocore_cpu_ms)} | {f1(per_call)} "
            f"| {f1(lv.gateway.cpu['dynamodb'] * 1000 / lv.n)} | {f2(lv.gateway.cpu['upstream'] * 1000 / lv.n)} "
            f"| {f2(lv.delta('gc_ms') / lv.n)} |"
        )
    return head + "\n".join(rows) + "\n"


def memory_verdict(memory: dict[str, Any]) -> tuple[str, str, bool | None]:
    soak = [s for s in memory["samples"] if s.get("phase") == "soak"]
    total = memory["samples"][-1]["requests"]
    if len(soak) >= 2:
        first, last = soak[0], soak[-1]
        growth = last["rss_mb"] - first["rss_mb"]
        per_k = growth / max(last["requests"] - first["requests"], 1) * 1000
        objects = last["objects"] - first["objects"]
        value = (
            f"{first['rss_mb']:.1f} → {last['rss_mb']:.1f} MB ({growth:+.1f} MB, {per_k:+.2f} MB per 1,000 requests; "
            f"{objects:+,} live objects) from {first['requests']:,} to {last['requests']:,} requests"
        )
    else:
        growth, value = float("nan"), f"only {total:,} requests"
    name = f"no memory growth over {SOAK_TARGET:,} requests (soak RSS growth ≤ {MEMORY_GROWTH_LIMIT_MB:.0f} MB)"
    if total < SOAK_TARGET:
        return name, value + f"; {SOAK_TARGET:,} not reached in the time budget (`--soak {SOAK_TARGET}`)", None
    return name, value, growth <= MEMORY_GROWTH_LIMIT_MB


def targets_table(levels: list[Level], memory: dict[str, Any], seconds: float) -> str:
    rows: list[tuple[str, str, bool | None]] = []
    by = {(lv.mode, lv.conc): lv for lv in levels}
    for mode in ("whole", "stream"):
        lv = by.get((mode, 1))
        if lv:
            v, raw = lv.own_added(50), lv.added(50)
            rows.append((f"added latency p50 ≤ 3 ms at concurrency 1, {mode} (own / side by side)",
                         f"{f1(v)} / {f1(raw)} ms", v <= TARGET_ADDED_P50_C1))  # fmt: skip
    for conc, limit in TARGET_ADDED_P99.items():
        for mode in ("whole", "stream"):
            lv = by.get((mode, conc))
            if lv:
                v, raw = lv.own_added(99), lv.added(99)
                rows.append((f"added latency p99 ≤ {limit:.0f} ms at concurrency {conc}, {mode} "
                             "(own / side by side)", f"{f1(v)} / {f1(raw)} ms", v <= limit))  # fmt: skip
    for lv in levels:
        if lv.stream:
            raw, excl = lv.added_ttft(50), lv.own_ttft(50)
            rows.append((f"added TTFT p50 ≤ 5 ms at concurrency {lv.conc} (own / side by side)",
                         f"{f1(excl)} / {f1(raw)} ms", excl <= TARGET_TTFT_P50))  # fmt: skip
    worst = max(levels, key=lambda lv: lv.ddb_calls)
    most = max(lv.max_calls for lv in levels)
    share = max(lv.over_two for lv in levels)
    rows.append(
        (
            "≤ 2 DynamoDB round trips per request",
            f"{worst.ddb_calls:.3f} per request at worst ({worst.mode}, {worst.conc}); one request made {most}; "
            f"up to {share:.1%} of a level's requests made more than 2",
            worst.ddb_calls <= TARGET_DDB_CALLS and most <= TARGET_DDB_CALLS,
        )
    )
    reads = [(lv, lv.delta("ops").get("GetItem", 0)) for lv in levels]
    over = [f"{lv.mode}/{lv.conc}: {n} in {lv.gateway.wall:.0f} s" for lv, n in reads
            if n > int(lv.gateway.wall // KEY_CACHE_SECONDS) + 1]  # fmt: skip
    rows.append(
        (
            f"no key read for a key seen in the last few seconds (≤ 1 GetItem per {KEY_CACHE_SECONDS:.0f} s)",
            f"{sum(n for _, n in reads)} key reads in {sum(lv.gateway.wall for lv in levels):.0f} s of load"
            + (f"; too many at {'; '.join(over)}" if over else ""),
            not over,
        )
    )
    rows.append(memory_verdict(memory))
    rows.append(("the whole benchmark in under 5 minutes", f"{seconds:.0f} s", seconds < TARGET_SECONDS))
    text = "| target | measured | met |\n|---|---|---|\n"
    for name, value, met in rows:
        text += f"| {name} | {value} | {'not measured' if met is None else ('yes' if met else '**no**')} |\n"
    return text


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores ({model}), {platform.system()} {platform.release()}"


def revision() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "layers"], cwd=ROOT, capture_output=True, text=True)
    except OSError:
        return "unknown"
    return head.stdout.strip() + (" with uncommitted changes in layers/" if dirty.stdout.strip() else "")


def report(args: argparse.Namespace, levels: list[Level], memory: dict[str, Any], seconds: float,
           command: str, load: dict[str, float]) -> str:  # fmt: skip
    samples = ", ".join(f"{s['requests']:,}: {s['rss_mb']:.1f} MB / {s['objects']:,}" for s in memory["samples"])
    errors = [r.error for lv in levels for r in (*lv.direct.errors, *lv.gateway.errors)]
    lines = [
        f"# Gateway benchmark{' (quick)' if args.quick else ''}",
        "",
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}; gateway revision {revision()}",
        f"- machine: {machine()}",
        f"- Python {platform.python_version()}; uvicorn (h11, asyncio loop) for the gateway and the fake upstream",
        f"- command: `{command}` ({seconds:.0f} s)",
        *(
            [f"- experiments: {', '.join(args.experiment)} (changes to the gateway made by the benchmark)"]
            if args.experiment
            else []
        ),
        f"- fake upstream: {args.latency_ms:g} ms before the answer; streams send {args.chunks} content chunks "
        f"{args.gap_ms:g} ms apart, then a finish chunk, a usage chunk and `[DONE]`",
        "- processes: load generator, gateway (`local_app()` under uvicorn), fake upstream and the local DynamoDB "
        "(moto's server as `gateway.local.dynamodb.start` runs it) each in their own process"
        + ("; the gateway pinned alone to one core, the others to the other core(s)" if args.pin else ""),
        f"- other load on the machine during the run: {load['other_cores']:.2f} cores busy outside the benchmark "
        f"(the benchmark's own processes: {load['own_cores']:.2f} cores); load average {load['before']:.1f} before, "
        f"{load['after']:.1f} after",
        "",
        "## Gateway against direct-to-upstream",
        "",
        "Two measures of what the gateway adds. *Side by side*: a percentile of the gateway path minus the same "
        "percentile of the direct path, same client, same concurrency, DynamoDB included; when the emulator "
        "caps the gateway path at a few requests a second while the direct path runs hundreds, the two paths "
        "load the client and the upstream differently, so this difference is distorted at 16 and 64. *Own*: "
        "per request, what the client saw minus what the upstream took for that very request (its own "
        "timestamps, same clock) minus the time the request waited for DynamoDB; it still includes the client "
        'and loopback floor (detail table), so it slightly overstates. "DynamoDB wait" is the time a request '
        "waited for DynamoDB (its own calls, and reads another request was making for it) minus the CPU "
        'botocore spent on its calls, which stays counted as the gateway\'s; "on the wire" is the part spent '
        "in HTTP exchanges with the emulator.",
        "",
        main_table(levels),
        "## Detail",
        "",
        detail_table(levels),
        "## Targets",
        "",
        targets_table(levels, memory, seconds),
        "## Memory",
        "",
        "Gateway after N requests since warm-up: resident memory / live Python objects. " + samples + ". "
        f"Peak (VmHWM): {memory['hwm_mb']:.1f} MB. The emulator: {memory['moto_first_mb']:.0f} → "
        f"{memory['moto_last_mb']:.0f} MB (it keeps every item written). Soak errors: {memory['errors']}. "
        f"Gateway garbage collections over the run: {gc_summary(memory['gc'])}.",
        "",
    ]
    if errors:
        lines += ["## Errors", "", f"{len(errors)} failed requests; first: `{errors[0]}`", ""]
    return "\n".join(lines)


def gc_summary(stats: dict[str, Any]) -> str:
    counts = ", ".join(f"generation {g}: {n:,}" for g, n in sorted(stats["gc_count"].items()))
    return f"{counts}; {stats['gc_ms']:.0f} ms in all, the longest pause {stats['gc_max_ms']:.1f} ms"


def update_readme(text: str) -> None:
    """Quote the latest tables in bench/README.md, between its markers."""
    if not README.exists():
        return
    body = README.read_text()
    begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
    if begin in body and end in body:
        head, rest = body.split(begin, 1)
        _, tail = rest.split(end, 1)
        README.write_text(f"{head}{begin}\n{text}{end}{tail}")


# --- profile mode -----------------------------------------------------------------------------


async def profile(bench: Bench, out: Path, n: int) -> None:
    await bench.warm_up(50)
    base = out.with_suffix("")
    get_json(bench.stack.gateway_url + "/__bench/profile/start")
    cpu0 = cpu_seconds(bench.stack.gateway.pid)
    for stream in (False, True):
        await bench.path(bench.gateway_target, payload(MODEL, stream), 1, n, None, 0)
    cpu = cpu_seconds(bench.stack.gateway.pid) - cpu0
    get_json(bench.stack.gateway_url + f"/__bench/profile/stop?out={base}")
    write_profile(out, base, n, cpu)


def write_profile(out: Path, base: Path, n: int, cpu: float) -> None:
    import io
    import pstats

    text = io.StringIO()
    text.write(f"# cProfile of the gateway: {n} whole + {n} streamed requests at concurrency 1\n")
    text.write(f"# gateway CPU while profiled: {cpu * 1000 / (2 * n):.2f} ms/request (cProfile inflates it)\n")
    for name in ("loop", "workers"):
        path = Path(f"{base}.{name}.pstats")
        if not path.exists():
            continue
        for order in ("tottime", "cumulative"):
            text.write(f"\n===== {name} thread(s), sorted by {order} =====\n")
            stats = pstats.Stats(str(path), stream=text)
            stats.sort_stats(order).print_stats(60)
    out.write_text(text.getvalue())


# --- main -------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, stack: Stack, started: float, command: str) -> int:
    bench = Bench(stack)
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.profile:
        out = RESULTS / "profile.txt"
        await profile(bench, out, 100 if args.quick else 300)
        print(f"profile written to {out.relative_to(ROOT)} (and {out.stem}.*.pstats)")
        return 0
    plan = QUICK_PLAN if args.quick else FULL_PLAN
    budget = QUICK_BUDGET_SECONDS if args.quick else BUDGET_SECONDS
    soak_target = args.soak if args.soak is not None else (QUICK_SOAK_TARGET if args.quick else SOAK_TARGET)
    load = {"before": os.getloadavg()[0], "busy0": system_busy(), "own0": bench.own_cpu(), "t0": time.monotonic()}
    print("warming up ...", flush=True)
    await bench.warm_up(10 if args.quick else 40)
    since = bench.stats()["requests"]
    moto0 = memory_kb(stack.dynamo.pid)["VmRSS"] / 1024
    samples: list[dict[str, Any]] = [{**bench.memory_sample(since), "phase": "warm"}]
    levels = []
    for mode, conc, n in plan:
        lv = await bench.level(mode, conc, n)
        levels.append(lv)
        samples.append({**bench.memory_sample(since), "phase": "levels"})
        print(
            f"{mode:>6} c={conc:<3} n={n:<4} req/s {lv.direct.rps:5.0f} / {lv.gateway.rps:4.0f}  "
            f"side by side p50/p99 {lv.added(50):7.1f} / {lv.added(99):7.1f} ms, own "
            f"{lv.own_added(50):5.1f} / {lv.own_added(99):6.1f} ms  calls/req {lv.ddb_calls:.2f}  "
            f"CPU {lv.cpu_ms:.1f} ms/req  errors {len(lv.gateway.errors) + len(lv.direct.errors)}",
            flush=True,
        )
    print("memory soak ...", flush=True)
    deadline = (started + budget) if args.soak is None else float("inf")
    soak_errors = await bench.soak(since, soak_target, deadline, samples)
    memory = {
        "samples": samples,
        "hwm_mb": memory_kb(stack.gateway.pid)["VmHWM"] / 1024,
        "moto_first_mb": moto0,
        "moto_last_mb": memory_kb(stack.dynamo.pid)["VmRSS"] / 1024,
        "errors": soak_errors,
        "gc": bench.stats(),
    }
    seconds = time.monotonic() - started
    span = time.monotonic() - load["t0"]
    load["own_cores"] = (bench.own_cpu() - load["own0"]) / span
    load["other_cores"] = max(system_busy() - load["busy0"] - (bench.own_cpu() - load["own0"]), 0) / span
    load["after"] = os.getloadavg()[0]
    text = report(args, levels, memory, seconds, command, load)
    print()
    print(text)
    if args.experiment:
        out = RESULTS / "experiment.md"
    else:
        out = RESULTS / ("quick.md" if args.quick else "soak.md" if args.soak is not None else "latest.md")
    out.write_text(text)
    if not args.quick and args.soak is None and not args.experiment:
        update_readme(main_table(levels) + "\n" + targets_table(levels, memory, seconds))
    print(f"written to {out.relative_to(ROOT)}; the processes' logs are in {stack.logdir}")
    failed = sum(len(lv.gateway.errors) + len(lv.direct.errors) for lv in levels) + soak_errors
    return 1 if failed else 0


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # so the child processes are stopped on the way out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a ~40 s smoke run (fewer requests, short soak)")
    parser.add_argument("--profile", action="store_true", help="profile the gateway under load instead")
    parser.add_argument("--soak", type=int, metavar="N",
                        help=f"run the memory soak to N requests whatever the time (default: up to {SOAK_TARGET:,} "
                        f"within the {BUDGET_SECONDS:.0f} s budget)")  # fmt: skip
    parser.add_argument("--no-pin", dest="pin", action="store_false",
                        help="let the OS place the processes (default: the gateway alone on one core)")  # fmt: skip
    parser.add_argument("--experiment", action="append", default=[], choices=["gc-freeze", "no-param-validation"],
                        help="try a change to the gateway without editing it (repeatable); "
                        "writes bench/results/experiment.md")  # fmt: skip
    parser.add_argument("--latency-ms", type=float, default=20.0, help="the fake upstream's latency")
    parser.add_argument("--chunks", type=int, default=8, help="content chunks per streamed answer")
    parser.add_argument("--gap-ms", type=float, default=5.0, help="gap between streamed chunks")
    args = parser.parse_args(argv)
    command = " ".join([".venv/bin/python -m bench.run", *map(shlex.quote, sys.argv[1:] if argv is None else argv)])
    started = time.monotonic()
    if args.experiment:
        os.environ["BENCH_EXPERIMENTS"] = ",".join(args.experiment)
    signal.signal(signal.SIGTERM, _terminate)
    logdir = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    stack = start_stack(args, logdir)
    try:
        return asyncio.run(run(args, stack, started, command))
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
