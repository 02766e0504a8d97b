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
import os
import shlex
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.load import Bench
from bench.processes import ROOT, Stack, memory_kb, start_stack, system_busy
from bench.report import SOAK_TARGET, main_table, report, targets_table, update_readme, write_profile

RESULTS = ROOT / "bench" / "results"

# Measured requests per level, by concurrency; at each concurrency a whole level, then a streamed one,
# each warming up first. Sized for what the local DynamoDB (moto, ~70 ms of CPU per gateway request)
# lets through in the 5-minute budget.
FULL_PLAN = {1: 100, 16: 200, 64: 256}
QUICK_PLAN = {1: 20, 16: 32, 64: 64}
MODES = ("whole", "stream")
BUDGET_SECONDS = 280.0  # the soak stops short of SOAK_TARGET rather than run past this
QUICK_BUDGET_SECONDS = 60.0
QUICK_SOAK_TARGET = 600


async def run(args: argparse.Namespace, stack: Stack, started: float, command: str) -> int:
    bench = Bench(stack)
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.profile:
        out = RESULTS / "profile.txt"
        base, n = out.with_suffix(""), 100 if args.quick else 300
        write_profile(out, base, n, await bench.profile(base, n))
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
    for conc, n in plan.items():
        for mode in MODES:
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
