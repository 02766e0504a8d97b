"""The load driver: a level (one mode and concurrency, the direct path then the gateway path), the
percentiles and per-request measures drawn from it, the warm-up, the memory soak and the profile."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.client import PROMPTS, Body, Conn, Result, drive, payload, request_prefix
from bench.peer import Peer
from bench.processes import MODEL, UPSTREAM_MODEL, Stack, cpu_seconds, get_json, memory_kb

SOAK_CONCURRENCY = 16
SOAK_SEGMENT = 250  # one memory sample per segment


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
CALLS, WIRE, WAIT, CALLS_FB, WIRE_FB, WAIT_FB, T_IN, T_FB, T_OUT, CPU_FB = range(10)


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
    prompt: str = "short"  # a key of bench.client.PROMPTS
    peer: PathRun | None = None  # the same requests through the peer proxy (bench.peer), if one ran
    peer_hwm_mb: float = float("nan")

    @property
    def stream(self) -> bool:
        return self.mode == "stream"

    @property
    def direct_cpu_ms(self) -> float:
        """CPU of both ends of a direct call, per request: the load client and the fake upstream. A
        proxy does one server end and one client end of such a call per request (it also does a
        second connection's worth of HTTP), so gateway CPU / this is in direct calls' worth."""
        d = self.direct
        return (d.cpu["upstream"] + d.cpu["client"]) * 1000 / self.n

    @property
    def cpu_ratio(self) -> float:
        return self.cpu_ms / self.direct_cpu_ms if self.direct_cpu_ms else float("nan")

    @property
    def peer_cpu_ms(self) -> float:
        return self.peer.cpu["peer"] * 1000 / self.n if self.peer else float("nan")

    def peer_added(self, q: float) -> float:
        """Side by side for the peer: its percentile minus the direct path's."""
        return pct(self.lat(self.peer), q) - pct(self.lat(self.direct), q) if self.peer else float("nan")

    def peer_added_ttft(self, q: float) -> float:
        return pct(self.ttft(self.peer), q) - pct(self.ttft(self.direct), q) if self.peer else float("nan")

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

    @property
    def cpu_first_byte_ms(self) -> float:
        """p50 of the gateway's CPU per request until its first byte (the event loop's thread; meaningful at
        concurrency 1, where nothing else runs on it meanwhile)."""
        found = [rec[CPU_FB] for _, rec in self.pairs() if len(rec) > CPU_FB]
        return pct(found, 50) if found else float("nan")

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
    def __init__(self, stack: Stack, peer: Peer | None = None) -> None:
        self.stack = stack
        self.peer = peer
        self.direct_target = request_prefix(stack.upstream_url, "/v1/chat/completions", None)
        self.gateway_target = request_prefix(stack.gateway_url, "/v1/chat/completions", stack.key)
        self.peer_target = request_prefix(peer.url, "/v1/chat/completions", peer.key) if peer else None

    def stats(self) -> dict[str, Any]:
        return get_json(self.stack.gateway_url + "/__bench/stats")

    def cpu(self) -> dict[str, float]:
        s = self.stack
        found = {p.name: cpu_seconds(p.pid) for p in (s.gateway, s.dynamo, s.upstream)}
        found["gateway_loop"] = cpu_seconds(s.gateway.pid, s.gateway.pid)  # the main thread runs the event loop
        found["client"] = time.process_time()  # this process: the load client
        if self.peer is not None:
            found["peer"] = self.peer.cpu_seconds()
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

    async def level(self, mode: str, conc: int, n: int, prompt: str = "short", with_peer: bool = True) -> Level:
        """The same n requests straight to the upstream, through the gateway, then through the peer."""
        stream, size = mode == "stream", PROMPTS[prompt]
        tag = f"{prompt}-{mode}{conc}"
        direct_body = payload(UPSTREAM_MODEL, stream, size)
        direct = await self.path(self.direct_target, direct_body, conc, n, "d" + tag, 2 * conc + 10)
        gateway = await self.path(self.gateway_target, payload(MODEL, stream, size), conc, n, tag, min(conc, 16) + 4)
        gateway.records = get_json(self.stack.gateway_url + "/__bench/records")
        mem = memory_kb(self.stack.gateway.pid)
        lv = Level(mode, conc, n, direct, gateway, mem["VmHWM"] / 1024, mem["VmRSS"] / 1024, tag, prompt)
        if with_peer and self.peer is not None and self.peer_target is not None:
            lv.peer = await self.path(self.peer_target, payload(MODEL, stream, size), conc, n, "p" + tag, conc + 4)
            lv.peer_hwm_mb = self.peer.memory_mb()["VmHWM"]
        return lv

    async def warm_up(self, n: int) -> None:
        """Connections, caches and code paths: requests of each kind before anything is measured."""
        for stream in (False, True):
            await self.path(self.gateway_target, payload(MODEL, stream), 8, 0, None, n)
            await self.path(self.direct_target, payload(UPSTREAM_MODEL, stream), 8, 0, None, n)
            if self.peer_target is not None:
                await self.path(self.peer_target, payload(MODEL, stream), 8, 0, None, n)
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

    async def profile(self, base: Path, n: int, prompts: tuple[str, ...]) -> dict[str, float]:
        """cProfile of the gateway over n requests at concurrency 1 for each prompt size and mode, each
        written by the gateway to `{base}.{prompt}-{mode}.*.pstats`; returns the gateway's CPU seconds
        for each, unprofiled requests excluded."""
        await self.warm_up(50)
        found = {}
        for prompt in prompts:
            for stream in (False, True):
                name = f"{prompt}-{'stream' if stream else 'whole'}"
                body = payload(MODEL, stream, PROMPTS[prompt])
                await self.path(self.gateway_target, body, 1, 0, None, 10)
                get_json(self.stack.gateway_url + "/__bench/profile/start")
                cpu0 = cpu_seconds(self.stack.gateway.pid)
                await self.path(self.gateway_target, body, 1, n, None, 0)
                found[name] = cpu_seconds(self.stack.gateway.pid) - cpu0
                get_json(self.stack.gateway_url + f"/__bench/profile/stop?out={base}.{name}")
        return found
