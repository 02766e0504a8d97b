"""The real gateway app (`gateway.api.app.local_app()`) under uvicorn, instrumented from outside.

Configured through the environment exactly like `gateway-local`: DynamoDB at an endpoint given
by the launcher (moto in its own process), an extra catalog with the benchmark's provider, a
key created at start (printed as one JSON line when ready). Nothing in the package is changed:
the counters come from wrappers installed before the app is built.

- every DynamoDB round trip is counted by operation, and timed three ways: the HTTP exchange
  with the emulator alone (botocore's `URLLib3Session.send`), the whole botocore call
  (serialising, signing, sending, parsing: `BaseClient._make_api_call`), and the time the
  request's coroutine waits for it (`gateway.storage.dynamo.call`, which adds the hop to a
  worker thread and any queueing for one);
- each request carrying an `x-bench-id` header gets its own totals (and the totals at its first
  body byte, for time to first token), fetched by the launcher from `GET /__bench/records`;
- garbage-collector pauses are timed (`gc.callbacks`);
- `POST /__bench/profile/start` and `/__bench/profile/stop?out=PATH` run cProfile on the
  event-loop thread and on every DynamoDB worker call, and write merged pstats to PATH.

    .venv/bin/python -m bench.gateway_server --port 9103 --dynamodb ENDPOINT --tables JSON --catalog PATH
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import cProfile
import gc
import json
import os
import pstats
import threading
import time
from collections import Counter
from typing import Any
from urllib.parse import parse_qs

import orjson

from bench.writes import WriteUnits

BENCH_PREFIX = "/__bench/"
# Changes to try without editing the package (`bench.run --experiment NAME`): gc-freeze (gc.freeze()
# once the app is built), no-param-validation (botocore's Config(parameter_validation=False)).
EXPERIMENTS = frozenset(filter(None, os.environ.get("BENCH_EXPERIMENTS", "").split(",")))
EMULATOR_READ_TIMEOUT = 60
_lock = threading.Lock()


class Acc:
    """One request's DynamoDB totals (ms): round trips, time on the wire to the emulator, time the
    request waited (its own calls, and reads other requests made for it), and the CPU botocore spent
    on its calls (the gateway's own work, so not part of the wait)."""

    __slots__ = ("await_ms", "c_fb", "c_in", "calls", "cpu_ms", "fb", "t_fb", "t_in", "wire_ms")

    def __init__(self) -> None:
        self.calls = 0
        self.wire_ms = 0.0
        self.await_ms = 0.0
        self.cpu_ms = 0.0
        self.fb: tuple[int, float, float] | None = None
        self.t_in = time.perf_counter()  # CLOCK_MONOTONIC: the load generator's clock too
        self.t_fb = 0.0
        # The event loop's thread CPU: between these two, at concurrency 1, the request's own CPU until its
        # first byte (what a smaller Lambda stretches into time to first token).
        self.c_in = time.thread_time()
        self.c_fb = self.c_in

    def totals(self) -> tuple[int, float, float]:
        return self.calls, self.wire_ms, max(self.await_ms - self.cpu_ms, 0.0)

    def first_byte(self) -> None:
        self.fb = self.totals()
        self.t_fb = time.perf_counter()
        self.c_fb = time.thread_time()

    def row(self) -> list[float]:
        if self.fb is None:
            self.first_byte()
        assert self.fb is not None
        times = (self.t_in, self.t_fb, time.perf_counter())
        return [*(round(v, 4) for v in (*self.totals(), *self.fb)), *times, round((self.c_fb - self.c_in) * 1000, 4)]


_current: contextvars.ContextVar[Acc | None] = contextvars.ContextVar("bench_acc", default=None)


class Stats:
    def __init__(self) -> None:
        self.ops: Counter[str] = Counter()
        self.op_http_ms: Counter[str] = Counter()
        self.op_api_ms: Counter[str] = Counter()
        self.op_cpu_ms: Counter[str] = Counter()
        self.shared_waits = 0
        self.shared_ms = 0.0
        self.awaits = 0
        self.await_ms = 0.0
        self.requests = 0
        self.gc_ms = 0.0
        self.gc_count: Counter[int] = Counter()
        self.gc_max_ms = 0.0
        self.records: dict[str, list[float]] = {}
        self.write_units = WriteUnits()

    def snapshot(self) -> dict[str, Any]:
        with _lock:
            return {
                "ops": dict(self.ops),
                "op_http_ms": dict(self.op_http_ms),
                "op_api_ms": dict(self.op_api_ms),
                "op_cpu_ms": dict(self.op_cpu_ms),
                "shared_waits": self.shared_waits,
                "shared_ms": self.shared_ms,
                "awaits": self.awaits,
                "await_ms": self.await_ms,
                "requests": self.requests,
                "gc_ms": self.gc_ms,
                "gc_count": {str(k): v for k, v in self.gc_count.items()},
                "gc_max_ms": self.gc_max_ms,
                "write_units": self.write_units.total,
                "threads": threading.active_count(),
                "tasks": len(asyncio.all_tasks()),
            }


STATS = Stats()


class Profiling:
    def __init__(self) -> None:
        self.active = False
        self.main: cProfile.Profile | None = None
        self.workers: list[cProfile.Profile] = []
        self.local = threading.local()

    def worker_profile(self) -> cProfile.Profile:
        prof = getattr(self.local, "prof", None)
        if prof is None:
            prof = cProfile.Profile()
            self.local.prof = prof
            with _lock:
                self.workers.append(prof)
        return prof


PROFILING = Profiling()


def install_lean_hooks() -> None:
    """Count and time the request path's own DynamoDB client (gateway/storage/client.py), where the revision has one:
    its calls, the time a request waits for each, the time on the wire, and their write units."""
    try:
        from gateway.storage import client
        from gateway.storage.ops import StoreError
    except ImportError:  # a revision whose request path is on botocore
        return
    original_send = client.DynamoClient.send
    original_post = client.Pool.post

    async def send(self: Any, op: Any) -> Any:
        t0 = time.perf_counter()
        answer: Any = None
        try:
            answer = await original_send(self, op)
            return answer
        except StoreError as exc:
            answer = exc.body
            raise
        finally:
            ms = (time.perf_counter() - t0) * 1000
            STATS.write_units.note(op.action, op.payload, answer)
            acc = _current.get()
            with _lock:
                STATS.ops[op.action] += 1
                STATS.op_api_ms[op.action] += ms
                STATS.awaits += 1
                STATS.await_ms += ms
                if acc is not None:
                    acc.calls += 1
                    acc.await_ms += ms

    async def post(self: Any, headers: Any, body: bytes) -> Any:
        target = headers.get("x-amz-target") or "?"
        t0 = time.perf_counter()
        try:
            return await original_post(self, headers, body)
        finally:
            ms = (time.perf_counter() - t0) * 1000
            acc = _current.get()
            with _lock:
                STATS.op_http_ms[target.rsplit(".", 1)[-1]] += ms
                if acc is not None:
                    acc.wire_ms += ms

    client.DynamoClient.send = send  # type: ignore[method-assign]
    client.Pool.post = post  # type: ignore[method-assign]


def install_hooks() -> None:
    """Wrap botocore and the package's `dynamo.call` to count and time every DynamoDB round trip."""
    import botocore.client
    import botocore.exceptions
    import botocore.httpsession

    from gateway.storage import dynamo

    os.environ["DYNAMODB_READ_TIMEOUT_SECONDS"] = str(EMULATOR_READ_TIMEOUT)  # the request path's own client
    install_lean_hooks()

    # moto handles one request at a time at ~70 ms of CPU per gateway request, so at concurrency 64
    # its queue is longer than the gateway's 5 s read timeout; DynamoDB answers in milliseconds.
    # Only that timeout changes: the client is otherwise built exactly as the package builds it.
    if hasattr(dynamo, "Config"):  # a revision that builds its botocore client in gateway/storage/dynamo.py
        config = dynamo.Config
        changes: dict[str, Any] = {"read_timeout": EMULATOR_READ_TIMEOUT}
        if "no-param-validation" in EXPERIMENTS:
            changes["parameter_validation"] = False
        dynamo.Config = lambda **kw: config(**{**kw, **changes})  # type: ignore[misc]
        dynamo.client.cache_clear()
    else:  # botocore's Config comes in by import where the client is built; only the timeout changes
        import botocore.config

        base = botocore.config.Config
        original_init = base.__init__

        def init(self: Any, *args: Any, **kwargs: Any) -> None:
            if "read_timeout" in kwargs:
                kwargs["read_timeout"] = EMULATOR_READ_TIMEOUT
            original_init(self, *args, **kwargs)

        base.__init__ = init  # type: ignore[method-assign]

    original_send = botocore.httpsession.URLLib3Session.send

    def send(self: Any, request: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return original_send(self, request)
        finally:
            ms = (time.perf_counter() - t0) * 1000
            acc = _current.get()
            op = request.headers.get("X-Amz-Target") or b"?"
            op = op.decode() if isinstance(op, bytes) else str(op)
            op = op.rsplit(".", 1)[-1]
            with _lock:
                STATS.op_http_ms[op] += ms
                if acc is not None:
                    acc.wire_ms += ms

    botocore.httpsession.URLLib3Session.send = send  # type: ignore[method-assign]

    original_api = botocore.client.BaseClient._make_api_call

    def make_api_call(self: Any, operation_name: str, api_params: Any) -> Any:
        t0, c0 = time.perf_counter(), time.thread_time()
        answer: Any = None
        try:
            answer = original_api(self, operation_name, api_params)
            return answer
        except botocore.exceptions.ClientError as exc:
            answer = exc.response
            raise
        finally:
            STATS.write_units.note(operation_name, api_params, answer)
            ms = (time.perf_counter() - t0) * 1000
            cpu = (time.thread_time() - c0) * 1000
            acc = _current.get()
            with _lock:
                STATS.ops[operation_name] += 1
                STATS.op_api_ms[operation_name] += ms
                STATS.op_cpu_ms[operation_name] += cpu
                if acc is not None:
                    acc.calls += 1
                    acc.cpu_ms += cpu

    botocore.client.BaseClient._make_api_call = make_api_call  # type: ignore[method-assign]

    original_call = dynamo.call

    async def call(fn: Any, /, **kwargs: Any) -> Any:
        if PROFILING.active:
            inner = fn

            def fn(**kw: Any) -> Any:
                prof = PROFILING.worker_profile()
                prof.enable()
                try:
                    return inner(**kw)
                finally:
                    prof.disable()

        t0 = time.perf_counter()
        try:
            return await original_call(fn, **kwargs)
        finally:
            ms = (time.perf_counter() - t0) * 1000
            acc = _current.get()
            with _lock:
                STATS.awaits += 1
                STATS.await_ms += ms
                if acc is not None:
                    acc.await_ms += ms

    dynamo.call = call  # type: ignore[assignment]

    try:
        from gateway.storage.singleflight import SingleFlight
    except ImportError:  # an older package: every read is the request's own
        SingleFlight = None
    if SingleFlight is not None:
        original_do = SingleFlight.do

        async def do(self: Any, key: Any, load: Any) -> Any:
            acc = _current.get()
            before = acc.await_ms if acc is not None else 0.0
            t0 = time.perf_counter()
            try:
                return await original_do(self, key, load)
            finally:
                if acc is not None and acc.await_ms == before:  # it waited on another request's read
                    ms = (time.perf_counter() - t0) * 1000
                    acc.await_ms += ms
                    with _lock:
                        STATS.shared_waits += 1
                        STATS.shared_ms += ms

        SingleFlight.do = do  # type: ignore[method-assign]

    gc_started = [0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            gc_started[0] = time.perf_counter()
        else:
            ms = (time.perf_counter() - gc_started[0]) * 1000
            STATS.gc_ms += ms
            STATS.gc_count[info.get("generation", -1)] += 1
            STATS.gc_max_ms = max(STATS.gc_max_ms, ms)

    gc.callbacks.append(on_gc)


async def _reply(send: Any, status: int, payload: Any) -> None:
    body = orjson.dumps(payload)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _proc_status() -> dict[str, int]:
    found = {}
    with open("/proc/self/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                found[name] = int(value.split()[0])  # kB
    return found


class Bench:
    """Outermost ASGI wrapper: gives each request its DynamoDB totals, and serves /__bench/*."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"].startswith(BENCH_PREFIX):
            await self.control(scope, send)
            return
        bench_id = None
        for name, value in scope["headers"]:
            if name == b"x-bench-id":
                bench_id = value.decode()
                break
        acc = Acc()
        token = _current.set(acc)

        async def send_first(message: Any) -> None:
            if acc.fb is None and message["type"] == "http.response.body" and message.get("body"):
                acc.first_byte()
            await send(message)

        try:
            await self.app(scope, receive, send_first)
        finally:
            _current.reset(token)
            STATS.requests += 1
            if bench_id is not None:
                STATS.records[bench_id] = acc.row()

    async def control(self, scope: Any, send: Any) -> None:
        what = scope["path"][len(BENCH_PREFIX) :]
        query = parse_qs(scope.get("query_string", b"").decode())
        if what == "stats":
            await _reply(send, 200, {**STATS.snapshot(), **_proc_status(), "pid": os.getpid()})
        elif what == "records":
            records, STATS.records = STATS.records, {}
            await _reply(send, 200, records)
        elif what == "objects":
            await _reply(send, 200, {"objects": len(gc.get_objects()), **_proc_status()})
        elif what == "profile/start":
            PROFILING.workers = []
            PROFILING.local = threading.local()
            PROFILING.main = cProfile.Profile()
            PROFILING.active = True
            PROFILING.main.enable()  # this is the event-loop thread
            await _reply(send, 200, {"profiling": True})
        elif what == "profile/stop":
            assert PROFILING.main is not None
            PROFILING.main.disable()
            PROFILING.active = False
            out = query["out"][0]
            pstats.Stats(PROFILING.main).dump_stats(out + ".loop.pstats")
            workers = [p for p in PROFILING.workers if p.getstats()]
            if workers:
                merged = pstats.Stats(workers[0])
                for p in workers[1:]:
                    merged.add(p)
                merged.dump_stats(out + ".workers.pstats")
            await _reply(send, 200, {"loop": out + ".loop.pstats", "workers": len(workers)})
        else:
            await _reply(send, 404, {"error": what})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dynamodb", required=True, help="the DynamoDB endpoint (moto's server)")
    parser.add_argument("--tables", required=True, help='JSON: {"KEYS_TABLE": name, "USAGE_TABLE": name}')
    parser.add_argument("--catalog", required=True, help="the extra catalog file (GATEWAY_CATALOG_EXTRA)")
    args = parser.parse_args(argv)

    from gateway.local.dynamodb import FAKE_CREDENTIALS

    for name, value in FAKE_CREDENTIALS.items():
        os.environ.setdefault(name, value)
    os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = args.dynamodb
    os.environ.update(json.loads(args.tables))
    os.environ["GATEWAY_CATALOG_EXTRA"] = args.catalog

    install_hooks()

    from gateway.accounts import keys

    key, record = keys.create(
        owner="bench@example.com",
        name="benchmark key",
        plan="startup",
        rpm=10**9,
        tpm=10**12,
        monthly_credit=10**6,
    )

    import uvicorn

    from gateway.local.app import local_app

    app = Bench(local_app())
    if "gc-freeze" in EXPERIMENTS:
        gc.collect()
        gc.freeze()  # what is alive now (modules, the app, clients) is never scanned again
    print(json.dumps({"key": key, "key_id": record.key_id, "pid": os.getpid()}), flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False, backlog=4096)


if __name__ == "__main__":
    main()
