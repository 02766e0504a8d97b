"""The benchmark's report: the markdown tables (main, detail, targets), the run's circumstances, the
quoted tables in bench/README.md, and the profile's text."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import pstats
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.compare import cpu_section, f1, f2, peer_verdicts, sizing_inputs
from bench.load import Level, pct
from bench.processes import ROOT
from bench.sizing import memory_section

README = ROOT / "bench" / "README.md"
KEY_CACHE_SECONDS = 5.0  # the gateway's default KEY_CACHE_SECONDS
SOAK_TARGET = 10_000  # gateway requests after the warm-up memory sample

# The targets, in milliseconds.
TARGET_ADDED_P50_C1 = 3.0
TARGET_ADDED_P99 = {1: 10.0, 16: 30.0, 64: 100.0}
TARGET_TTFT_P50 = 5.0
TARGET_DDB_CALLS = 2
TARGET_SECONDS = 300.0
MEMORY_GROWTH_LIMIT_MB = 5.0  # "no growth": the soak's RSS within this of its first sample


def trio(fn: Any, qs: tuple[float, ...] = (50, 90, 99)) -> str:
    return " / ".join(f1(fn(q)) for q in qs)


def main_table(levels: list[Level]) -> str:
    head = (
        "| prompt | mode | conc | requests | req/s direct / gateway | side by side: added latency p50 / p90 / p99 ms "
        "| side by side: added TTFT p50 / p90 / p99 ms | DynamoDB calls/req | write units/req (request path) "
        "| DynamoDB wait ms/req (on the wire) "
        "| gateway's own added latency p50 / p90 / p99 ms | gateway's own added TTFT p50 / p90 / p99 ms "
        "| gateway CPU ms/req | gateway peak RSS MB | errors |\n"
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n"
    )
    rows = []
    for lv in levels:
        errors = len(lv.direct.errors) + len(lv.gateway.errors) + len(lv.peer.errors if lv.peer else [])
        rows.append(
            f"| {lv.prompt} | {lv.mode} | {lv.conc} | {lv.n} | {lv.direct.rps:.0f} / {lv.gateway.rps:.1f} "
            f"| {trio(lv.added)} | {trio(lv.added_ttft) if lv.stream else '-'} | {f2(lv.ddb_calls)} "
            f"| {f2(lv.delta('write_units') / lv.n)} "
            f"| {f1(lv.ddb_wait_ms)} ({f1(lv.ddb_wire_ms)}) | {trio(lv.own_added)} "
            f"| {trio(lv.own_ttft) if lv.stream else '-'} "
            f"| {f1(lv.cpu_ms)} | {lv.hwm_mb:.0f} | {errors} |"
        )
    return head + "\n".join(rows) + "\n"


def detail_table(levels: list[Level]) -> str:
    head = (
        "| prompt | mode | conc | direct p50 / p99 ms | gateway p50 / p99 ms | direct TTFT p50 / p99 ms "
        "| gateway TTFT p50 / p99 ms | client and loopback floor, direct, p50 / p99 ms "
        "| DynamoDB calls per 1,000 requests | most calls in one request (share > 2) "
        "| gateway CPU ms/req: event loop / other threads | botocore CPU ms/req "
        "| emulator ms per call | moto CPU ms/req | upstream CPU ms/req | GC ms/req |\n"
        "|---|---|--:|--:|--:|--:|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|\n"
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
            f"| {lv.prompt} | {lv.mode} | {lv.conc} | {f1(pct(d, 50))} / {f1(pct(d, 99))} "
            f"| {f1(pct(g, 50))} / {f1(pct(g, 99))} "
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


def targets_table(levels: list[Level], memory: dict[str, Any], seconds: float, peer: str | None) -> str:
    rows: list[tuple[str, str, bool | None]] = []
    by = {(lv.mode, lv.conc): lv for lv in levels if lv.prompt == "short"}
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
    for lv in by.values():
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
    rows += peer_verdicts(levels, peer)
    rows.append(memory_verdict(memory))
    rows.append(("the whole benchmark in under 5 minutes", f"{seconds:.0f} s", seconds < TARGET_SECONDS))
    text = "| target | measured | met |\n|---|---|---|\n"
    for name, value, met in rows:
        text += f"| {name} | {value} | {'not measured' if met is None else ('yes' if met else '**no**')} |\n"
    return text


def writes(memory: dict[str, Any]) -> float | None:
    """DynamoDB write units per request with one request of a key in flight (the request path's) and the tally
    function's share, if measured: what the cost of a million requests is computed with."""
    units = memory.get("write_units")
    return units["request_path_alone"] + units["tally"] if units else None


def write_units_line(memory: dict[str, Any]) -> str:
    units = memory.get("write_units")
    if not units:
        return ""
    return (
        f"DynamoDB write units per request: **{units['request_path_alone'] + units['tally']:.2f}** with one request "
        f"of the key in flight: {units['request_path_alone']:.2f} on the request path (admission, settlement, "
        "provider health: every write the gateway sent, at the size of the item it wrote, twice in a transaction) "
        f"and {units['tally']:.2f} counting the usage counters from the table's stream ({units['batches']} batches "
        f"for {units['requests']:,} requests, as TallyFunction counts them, run by the benchmark after the load; "
        f"bench/writes.py). Over the whole run, where up to 64 requests of one key are in flight at once and each "
        f"open reservation adds to the account item every admission and settlement rewrites: "
        f"{units['request_path'] + units['tally']:.2f} (the detail table has each level's)."
    )


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores ({model}), {platform.system()} {platform.release()}"


def revision(tree: Path = ROOT) -> str:
    """The commit of the tree the gateway was imported from, and whether its layers/ had changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tree, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "layers"], cwd=tree, capture_output=True, text=True)
    except OSError:
        return "unknown"
    where = "" if tree == ROOT else f" (from {tree})"
    return head.stdout.strip() + where + (" with uncommitted changes in layers/" if dirty.stdout.strip() else "")


def gateway_tree(args: argparse.Namespace) -> Path:
    """The work tree whose gateway package ran: --gateway-path's (its layers/gateway), else this one."""
    return Path(args.gateway_path).resolve().parents[1] if args.gateway_path else ROOT


def report(args: argparse.Namespace, levels: list[Level], memory: dict[str, Any], seconds: float,
           command: str, load: dict[str, float], peer: tuple[str, str] | None) -> str:  # fmt: skip
    """The whole markdown report; `peer` is the peer proxy's name and version, if one ran."""
    samples = ", ".join(f"{s['requests']:,}: {s['rss_mb']:.1f} MB / {s['objects']:,}" for s in memory["samples"])
    errors = [r.error for lv in levels for r in (*lv.direct.errors, *lv.gateway.errors,
                                                 *(lv.peer.errors if lv.peer else ()))]  # fmt: skip
    name, version = peer or (None, None)
    lines = [
        f"# Gateway benchmark{' (quick)' if args.quick else ''}",
        "",
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}; gateway revision {revision(gateway_tree(args))}",
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
        "(moto's server as `gateway-local` runs it) each in their own process"
        + (f", and {name} {version}" if peer else "")
        + ("; the gateway (and the peer) pinned alone to one core, the rest to the other core(s)" if args.pin else ""),
        f"- other load on the machine during the run: {load['other_cores']:.2f} cores busy outside the benchmark "
        f"(the benchmark's own processes: {load['own_cores']:.2f} cores); load average {load['before']:.1f} before, "
        f"{load['after']:.1f} after",
        "",
        cpu_section(levels, name, version),
        memory_section(sizing_inputs(levels), memory["hwm_mb"], writes(memory)),
        write_units_line(memory),
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
        targets_table(levels, memory, seconds, name),
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


def _short(path: str) -> str:
    """A profile's file name from the package or the library on: `gateway/chat/service.py`, `h11/_connection.py`."""
    for marker in ("/layers/gateway/", "/site-packages/", "/lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1].split("/", 1)[1] if marker == "/lib/python3" else path.split(marker, 1)[1]
    return path


def top_per_request(paths: list[Path], n: int, limit: int = 25) -> str:
    """The functions with the most CPU per request (own time, then cumulative time within the gateway's
    package), merged over the pstats files, as markdown tables with file:line."""
    found = [str(p) for p in paths if p.exists()]
    if not found:
        return "no profile\n"
    stats = pstats.Stats(*found, stream=io.StringIO())
    entries = [(key, tt, ct, nc) for key, (_, nc, tt, ct, _) in stats.stats.items()]  # type: ignore[attr-defined]
    idle = ("poll' of 'select.epoll", "'release' of '_thread.lock", "'acquire' of '_thread.lock",
            "'recv_into' of '_socket", "'connect' of '_socket")  # fmt: skip  # blocking waits in worker threads
    entries = [e for e in entries if not any(i in e[0][2] for i in idle)]  # waiting, not work
    entries = [e for e in entries if e[0][2] not in ("_run_once", "select", "run_forever")]  # the loop's idle
    text = "| own ms/req | cumulative ms/req | calls/req | function (file:line) |\n|--:|--:|--:|---|\n"
    for (file, line, fn), tt, ct, nc in sorted(entries, key=lambda e: -e[1])[:limit]:
        text += f"| {tt * 1000 / n:.3f} | {ct * 1000 / n:.3f} | {nc / n:.1f} | `{fn}` {_short(file)}:{line} |\n"
    text += "\nWithin the gateway's package, by cumulative time:\n\n"
    text += "| cumulative ms/req | own ms/req | calls/req | function (file:line) |\n|--:|--:|--:|---|\n"
    ours = [e for e in entries if "/gateway/" in e[0][0] and "/bench/" not in e[0][0]]
    for (file, line, fn), tt, ct, nc in sorted(ours, key=lambda e: -e[2])[:limit]:
        text += f"| {ct * 1000 / n:.3f} | {tt * 1000 / n:.3f} | {nc / n:.1f} | `{fn}` {_short(file)}:{line} |\n"
    return text


def write_profile(out: Path, base: Path, n: int, cpu: dict[str, float], tree: Path = ROOT) -> None:
    """The profile's report: for each prompt size and mode, the top CPU consumers per request."""
    text = io.StringIO()
    text.write(f"# cProfile of the gateway: {n} requests at concurrency 1 for each prompt size and mode\n\n")
    text.write(
        "cProfile inflates CPU (its hooks run on every call), so read the shares, not the absolute figures. "
        "The event-loop thread and the DynamoDB worker calls are merged; time spent waiting (epoll, locks, and "
        "the worker threads' blocking socket reads and connects to the emulator) is left out of the first "
        "table, though cumulative times of functions that block in a worker still include it "
        f"is left out. Revision {revision(tree)}. The `.pstats` files beside this one open with `python -m pstats`.\n"
    )
    for name, seconds in cpu.items():
        text.write(f"\n## {name}: gateway CPU while profiled {seconds * 1000 / n:.2f} ms/request\n\n")
        paths = [Path(f"{base}.{name}.{part}.pstats") for part in ("loop", "workers")]
        text.write(top_per_request(paths, n))
    out.write_text(text.getvalue())
