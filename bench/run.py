"""The gateway's performance benchmark, in one command:

    .venv/bin/python -m bench.run            # the whole benchmark (about 5 minutes), writes bench/results/latest.md
    .venv/bin/python -m bench.run --quick    # a ~2 minute smoke run, writes bench/results/quick.md
    .venv/bin/python -m bench.run --profile  # cProfile of the gateway under load, writes bench/results/profile.txt
    .venv/bin/python -m bench.run --peer none  # without the LiteLLM proxy beside it

It starts four processes on 127.0.0.1: moto's DynamoDB server (lambdas.dynamo_server), a fake
upstream with fixed latency and fixed gaps between stream chunks (bench.fake_upstream), the
real gateway app under uvicorn, instrumented from outside (bench.gateway_server), and this
process, the load generator (a minimal keep-alive HTTP/1.1 client on asyncio streams, so the
client's own overhead is small and identical on both paths); and a peer proxy, LiteLLM
(bench.peer), installed into build/litellm-venv on first use.

For each prompt size (a short one, and a coding agent's 90 KB system prompt), mode (whole,
streamed) and concurrency (1, 16; and 64 for the short prompt) it sends the same requests
straight to the upstream, then through the gateway, then through the peer (up to concurrency
16), and reports the CPU per request of each (compared with a direct call's), the Lambda memory
size that CPU calls for (bench.sizing), the gateway's added
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

from bench import peer as peers
from bench.compare import cpu_table, sizing_inputs
from bench.load import Bench
from bench.processes import ROOT, Stack, memory_kb, pin_alone, start_stack, system_busy
from bench.report import (
    SOAK_TARGET,
    gateway_tree,
    main_table,
    report,
    targets_table,
    update_readme,
    write_profile,
    write_units_line,
    writes,
)
from bench.sizing import memory_section
from bench.writes import tally_units

RESULTS = ROOT / "bench" / "results"

# Measured requests per level: (prompt, concurrency, requests); for each a whole level, then a streamed
# one, each warming up first. Sized for what the local DynamoDB (moto, tens of ms of CPU per gateway
# request, one request at a time) lets through in the 5-minute budget.
FULL_PLAN = [("short", 1, 80), ("90KB", 1, 60), ("short", 16, 160), ("90KB", 16, 160), ("short", 64, 192)]
QUICK_PLAN = [("short", 1, 20), ("90KB", 1, 20), ("short", 16, 32), ("90KB", 16, 32)]
PEER_MAX_CONCURRENCY = 16
MODES = ("whole", "stream")
BUDGET_SECONDS = 280.0  # the soak stops short of SOAK_TARGET rather than run past this
QUICK_BUDGET_SECONDS = 60.0
QUICK_SOAK_TARGET = 600


async def run(args: argparse.Namespace, stack: Stack, started: float, command: str, peer: peers.Peer | None) -> int:
    bench = Bench(stack, peer)
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.profile:
        out = RESULTS / (args.out or "profile.txt")
        base, n = out.with_suffix(""), 50 if args.quick else 150
        write_profile(out, base, n, await bench.profile(base, n, ("90KB", "short")), gateway_tree(args))
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
    for prompt, conc, n in plan:
        for mode in MODES:
            lv = await bench.level(mode, conc, n, prompt, with_peer=conc <= PEER_MAX_CONCURRENCY)
            levels.append(lv)
            samples.append({**bench.memory_sample(since), "phase": "levels"})
            errors = len(lv.gateway.errors) + len(lv.direct.errors) + len(lv.peer.errors if lv.peer else ())
            print(
                f"{prompt:>5} {mode:>6} c={conc:<3} n={n:<4} req/s {lv.direct.rps:5.0f} / {lv.gateway.rps:4.0f}  "
                f"side by side p50/p99 {lv.added(50):7.1f} / {lv.added(99):7.1f} ms, own "
                f"{lv.own_added(50):5.1f} / {lv.own_added(99):6.1f} ms  calls/req {lv.ddb_calls:.2f}  "
                f"CPU ms/req {lv.cpu_ms:.1f} (direct {lv.direct_cpu_ms:.2f}"
                + (f", {peer.name} {lv.peer_cpu_ms:.1f}" if lv.peer and peer else "")
                + f")  errors {errors}",
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
    served = bench.stats()
    tally, batches = tally_units(stack.dynamo_endpoint, stack.tables)
    alone = [lv.delta("write_units") / lv.n for lv in levels if lv.conc == 1]
    memory["write_units"] = {
        "request_path": served["write_units"] / served["requests"],
        "request_path_alone": sum(alone) / len(alone) if alone else float("nan"),
        "tally": tally / served["requests"],
        "batches": batches,
        "requests": served["requests"],
    }
    seconds = time.monotonic() - started
    span = time.monotonic() - load["t0"]
    load["own_cores"] = (bench.own_cpu() - load["own0"]) / span
    load["other_cores"] = max(system_busy() - load["busy0"] - (bench.own_cpu() - load["own0"]), 0) / span
    load["after"] = os.getloadavg()[0]
    text = report(args, levels, memory, seconds, command, load, (peer.name, peer.version) if peer else None)
    print()
    print(text)
    if args.out:
        out = RESULTS / args.out
    elif args.experiment:
        out = RESULTS / "experiment.md"
    else:
        out = RESULTS / ("quick.md" if args.quick else "soak.md" if args.soak is not None else "latest.md")
    out.write_text(text)
    if not args.quick and args.soak is None and not args.experiment and not args.out:
        name = peer.name if peer else None
        update_readme(
            cpu_table(levels, name) + "\n" + memory_section(sizing_inputs(levels), memory["hwm_mb"], writes(memory))
            + "\n" + write_units_line(memory) + "\n"
            + main_table(levels) + "\n" + targets_table(levels, memory, seconds, name)
        )  # fmt: skip
    print(f"written to {out.relative_to(ROOT)}; the processes' logs are in {stack.logdir}")
    failed = sum(len(lv.gateway.errors) + len(lv.direct.errors) + len(lv.peer.errors if lv.peer else ())
                 for lv in levels) + soak_errors  # fmt: skip
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
    parser.add_argument("--peer", choices=["litellm", "none"], default="litellm",
                        help="the peer proxy measured beside the gateway (installed on first use into "
                        "build/litellm-venv; skipped with a message if it cannot be)")  # fmt: skip
    parser.add_argument("--peer-version", default=peers.VERSION, help="the LiteLLM release (pip specifier)")
    parser.add_argument("--gateway-path", metavar="DIR",
                        help="import the gateway package from DIR (e.g. another work tree's layers/gateway) to "
                        "measure another revision with this benchmark")  # fmt: skip
    parser.add_argument("--out", metavar="NAME", help="write the report to bench/results/NAME (and leave README alone)")
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
    peer = None
    try:
        if args.peer == "litellm" and not args.profile:
            peer = peers.start_litellm(stack.upstream_url, logdir, args.peer_version)
            if peer is not None and args.pin:
                pin_alone(peer.proc)  # where the gateway runs: the same core for both
        return asyncio.run(run(args, stack, started, command, peer))
    finally:
        if peer is not None:
            peer.stop()
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
