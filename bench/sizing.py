"""Lambda memory sized from measured CPU and memory (issue 13, part 5).

Lambda gives a function CPU in proportion to its memory: 1,769 MB is one vCPU. A chat instance
serves one request at a time and its event loop runs on one thread, so the CPU a request needs
(measured here at concurrency 1) stretches by 1 / share below one vCPU and not at all above it.
This is a model, not a measurement on Lambda: it takes this machine's CPU milliseconds as Lambda's
and ignores the wait for DynamoDB and the upstream, which no memory size shortens.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

FULL_VCPU_MB = 1769  # Lambda: one vCPU's worth of CPU at this memory size
SIZES_MB = (256, 512, 1024)
MIN_MB, MAX_MB, STEP_MB = 128, 10240, 64
TARGET_ADDED_P50_MS = 25.0  # issue 23: the cheapest size whose modelled added p50 stays within this
RSS_SHARE = 0.75  # peak RSS must fit in this share of the memory size (the runtime and the adapter need the rest)


def modelled_added_ms(cpu_ms: float, memory_mb: int) -> float:
    """The added latency a request's gateway CPU becomes at `memory_mb`: CPU ms / vCPU share (≤ 1)."""
    return cpu_ms / min(memory_mb / FULL_VCPU_MB, 1.0)


def cheapest_mb(cpu_ms: float, peak_rss_mb: float, target_ms: float = TARGET_ADDED_P50_MS) -> int | None:
    """The smallest memory size (in STEP_MB steps) whose modelled added latency is within `target_ms` and
    that holds the peak RSS; None when even a whole vCPU leaves the request above the target."""
    if cpu_ms > target_ms:
        return None
    need = max(FULL_VCPU_MB * cpu_ms / target_ms, peak_rss_mb / RSS_SHARE, MIN_MB)
    return min(MAX_MB, math.ceil(need / STEP_MB) * STEP_MB)


def sizing_table(cpu_ms: Mapping[str, float], peak_rss_mb: float) -> str:
    """Markdown: the modelled added latency of each measured case at 256, 512 and 1,024 MB and at the
    cheapest size keeping every case's added p50 within the target."""
    worst = max(cpu_ms, key=lambda case: cpu_ms[case])
    cheapest = cheapest_mb(cpu_ms[worst], peak_rss_mb)
    sizes = sorted({*SIZES_MB, *([cheapest] if cheapest else [])})
    head = "| memory MB | vCPU share | " + " | ".join(f"{case} ms" for case in cpu_ms) + " | peak RSS fits |\n"
    head += "|--:|--:|" + "--:|" * len(cpu_ms) + "---|\n"
    rows = []
    for mb in sizes:
        cells = " | ".join(f"{modelled_added_ms(v, mb):.1f}" for v in cpu_ms.values())
        fits = "yes" if peak_rss_mb <= RSS_SHARE * mb else "**no**"
        mark = " (cheapest)" if mb == cheapest else ""
        rows.append(f"| {mb:,}{mark} | {min(mb / FULL_VCPU_MB, 1):.2f} | {cells} | {fits} |")
    if cheapest:
        verdict = (
            f"Cheapest size keeping the modelled added p50 within {TARGET_ADDED_P50_MS:.0f} ms for every case: "
            f"**{cheapest:,} MB** (set by {worst}: {cpu_ms[worst]:.1f} ms of CPU per request)."
        )
    else:
        verdict = (
            f"No size keeps {worst} within {TARGET_ADDED_P50_MS:.0f} ms: it needs {cpu_ms[worst]:.1f} ms of CPU, "
            "more than the target even at one whole vCPU (1,769 MB or more)."
        )
    budgets = ", ".join(f"{TARGET_ADDED_P50_MS * min(mb / FULL_VCPU_MB, 1):.1f} ms at {mb:,} MB" for mb in SIZES_MB)
    verdict += f" The CPU per request that keeps within {TARGET_ADDED_P50_MS:.0f} ms: {budgets}."
    return head + "\n".join(rows) + "\n\n" + verdict + "\n"


# us-east-1 list prices (docs/deploy.md, "What a million requests cost", gives the sources).
API_GATEWAY_PER_MILLION = 3.50
INVOCATIONS_PER_MILLION = 0.20
ARM_GB_SECOND = 0.0000133334
WRU_PER_MILLION = 0.625
ANSWER_SECONDS = (2, 10, 30)


def cost_per_million(memory_mb: int, seconds: float, write_units: float) -> float:
    """USD for a million chat answers of `seconds` each: API Gateway, Lambda invocations and duration (billed the
    whole time a stream is open), and DynamoDB writes; SnapStart's restores and cache are in docs/deploy.md."""
    duration = memory_mb / 1024 * seconds * 1_000_000 * ARM_GB_SECOND
    return API_GATEWAY_PER_MILLION + INVOCATIONS_PER_MILLION + duration + write_units * WRU_PER_MILLION


def cost_table(cpu_ms: Mapping[str, float], peak_rss_mb: float, write_units: float) -> str:
    worst = max(cpu_ms, key=lambda case: cpu_ms[case])
    cheapest = cheapest_mb(cpu_ms[worst], peak_rss_mb)
    sizes = sorted({*SIZES_MB, *([cheapest] if cheapest else [])})
    head = "| memory MB | " + " | ".join(f"{s} s answers, $ per million" for s in ANSWER_SECONDS) + " |\n"
    head += "|--:|" + "--:|" * len(ANSWER_SECONDS) + "\n"
    rows = [
        f"| {mb:,}{' (cheapest)' if mb == cheapest else ''} | "
        + " | ".join(f"{cost_per_million(mb, s, write_units):.2f}" for s in ANSWER_SECONDS)
        + " |"
        for mb in sizes
    ]
    return (
        f"AWS cost of a million chat answers with {write_units:.2f} DynamoDB write units each (measured: the "
        "request path's and the tally function's), API Gateway, and Lambda invocations and duration:\n\n"
        + head
        + "\n".join(rows)
        + "\n"
    )


def memory_section(cpu_ms: Mapping[str, float], peak_rss_mb: float, write_units: float | None = None) -> str:
    costs = "\n" + cost_table(cpu_ms, peak_rss_mb, write_units) if write_units is not None else ""
    return (
        "## Lambda memory size (modelled)\n\n"
        f"Added latency modelled as the gateway's CPU ms per request at concurrency 1 on the request's critical "
        "path (all of a whole answer's; a streamed answer's until its first byte, its added time to first "
        "token) / the vCPU share "
        f"(memory / {FULL_VCPU_MB:,} MB, at most 1): a chat instance serves one request at a time on one "
        "event-loop thread. This machine's CPU milliseconds are taken as Lambda's; DynamoDB and upstream "
        f"waits are left out (no memory size shortens them). Peak RSS {peak_rss_mb:.0f} MB must fit in "
        f"{RSS_SHARE:.0%} of the size.\n\n" + sizing_table(cpu_ms, peak_rss_mb) + costs
    )
