"""The CPU comparison tables: the gateway's CPU per request against a direct call's and a peer proxy's,
at each prompt size, mode and concurrency (issue 13, parts 3 and 4), and the inputs of the sizing."""

from __future__ import annotations

from bench.load import Level

TARGET_PEER_SHARE = 0.2  # the gateway's CPU per request: at most a fifth of the peer's


def fixed(x: float, digits: int) -> str:
    """A figure with `digits` decimals, or n/a where it was not measured (NaN)."""
    return "n/a" if x != x else f"{x:.{digits}f}"


def f1(x: float) -> str:
    return fixed(x, 1)


def f2(x: float) -> str:
    return fixed(x, 2)


def _pair(a: float, b: float) -> str:
    return f"{f1(a)} / {f1(b)}"


def cpu_table(levels: list[Level], peer: str | None) -> str:
    """One row per level: CPU ms per request, the ratios, added latency side by side, peak RSS."""
    p = peer or "peer"
    head = (
        "| prompt | mode | conc | gateway CPU ms/req | direct call CPU ms/req (client + upstream) | gateway / direct "
        f"| {p} CPU ms/req | gateway / {p} | added p50 ms, gateway / {p} | added p99 ms, gateway / {p} "
        f"| added TTFT p50 ms, gateway / {p} | gateway's own added p50 / p99 ms | peak RSS MB, gateway / {p} |\n"
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n"
    )
    rows = []
    for lv in levels:
        ratio = lv.cpu_ms / lv.peer_cpu_ms if lv.peer else float("nan")
        ttft = _pair(lv.added_ttft(50), lv.peer_added_ttft(50)) if lv.stream else "-"
        rows.append(
            f"| {lv.prompt} | {lv.mode} | {lv.conc} | {f1(lv.cpu_ms)} | {f2(lv.direct_cpu_ms)} "
            f"| {f1(lv.cpu_ratio)} | {f1(lv.peer_cpu_ms)} | {f2(ratio)} "
            f"| {_pair(lv.added(50), lv.peer_added(50))} | {_pair(lv.added(99), lv.peer_added(99))} | {ttft} "
            f"| {_pair(lv.own_added(50), lv.own_added(99))} | {lv.hwm_mb:.0f} / {fixed(lv.peer_hwm_mb, 0)} |"
        )
    return head + "\n".join(rows) + "\n"


def peer_verdicts(levels: list[Level], peer: str | None) -> list[tuple[str, str, bool | None]]:
    """Target rows: the gateway's CPU per request at most a fifth of the peer's, and (at concurrency 16,
    DynamoDB included) no more added p99 than the peer's."""
    rows: list[tuple[str, str, bool | None]] = []
    measured = [lv for lv in levels if lv.peer]
    if not measured:
        return [(f"gateway CPU per request ≤ {TARGET_PEER_SHARE:.0%} of the peer proxy's", "peer not run", None)]
    worst = max(measured, key=lambda lv: lv.cpu_ms / lv.peer_cpu_ms)
    share = worst.cpu_ms / worst.peer_cpu_ms
    rows.append(
        (
            f"gateway CPU per request ≤ a fifth of {peer}'s, every prompt, mode and concurrency",
            f"at worst {share:.2f} ({worst.prompt} {worst.mode} c={worst.conc}: {worst.cpu_ms:.1f} / "
            f"{worst.peer_cpu_ms:.1f} ms)",
            share <= TARGET_PEER_SHARE,
        )
    )
    for lv in measured:
        if lv.conc == 16:
            rows.append(
                (
                    f"added p99 at concurrency 16 ≤ {peer}'s, {lv.prompt} {lv.mode} (side by side, DynamoDB included)",
                    f"{lv.added(99):.1f} / {lv.peer_added(99):.1f} ms",
                    lv.added(99) <= lv.peer_added(99),
                )
            )
    return rows


def sizing_inputs(levels: list[Level]) -> dict[str, float]:
    """The gateway's CPU ms per request on a request's critical path at concurrency 1, by prompt and mode (what
    one Lambda instance, serving one request at a time, stretches into latency): all of a whole answer's, and
    a streamed answer's until its first byte. A stream's later CPU, a few tens of microseconds a chunk, runs
    while the provider produces the next chunk; what it adds at the end (settlement) is in the whole answer's."""
    found = {}
    for lv in levels:
        if lv.conc != 1:
            continue
        first = lv.cpu_first_byte_ms
        if lv.stream and first == first:  # not NaN: a revision of the benchmark that measured it
            found[f"{lv.prompt} stream, to first byte"] = first
        else:
            found[f"{lv.prompt} {lv.mode}"] = lv.cpu_ms
    return found


def cpu_section(levels: list[Level], peer: str | None, peer_version: str | None) -> str:
    about = f"{peer} {peer_version}, one worker, no database, in front of the same fake upstream" if peer else ""
    return (
        "## CPU per request: gateway, direct call" + (f", {peer}" if peer else "") + "\n\n"
        "CPU from /proc/PID/stat (user + system, all threads) over each measured run, divided by its requests: "
        "the gateway's server process alone (the DynamoDB emulator is another process)"
        + (f"; {about}, its process and any children" if peer else "; no peer proxy ran (`--peer none` or not "
           "installable)")
        + ". *Direct call CPU* is what both ends of a direct call spend per request: the load client (this "
        "process) plus the fake upstream's server, on the direct path. A proxy does the work of one server end "
        "and one client end of such a call, so *gateway / direct* says how many direct calls' worth of CPU the "
        "gateway spends per request. Added latencies are side by side (a percentile through the proxy minus the "
        "same percentile direct), the gateway's including its DynamoDB waits, which queue at the emulator at "
        "concurrency 16.\n\n" + cpu_table(levels, peer)
    )  # fmt: skip
