"""What admission and settlement add to a request: DynamoDB round trips and time, measured.

    .venv/bin/python -m bench.accounts [--requests 500]

Runs the real admission and settlement code against the local DynamoDB emulator, one request
after another on one key (the steady state of a warm Lambda instance), counting every call
botocore sends and timing each step. The emulator is slower than DynamoDB (a few
milliseconds where DynamoDB takes single-digit ones), so the round-trip counts are the
figures that carry over to AWS; the times say what the emulator costs a local run.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from decimal import Decimal
from typing import Any


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args(argv)

    from gateway.local import dynamodb

    dynamodb.start(0, prefix="bench-accounts")
    from gateway.accounts import admission, keys, plans, settlement
    from gateway.stats.counters import Sample
    from gateway.storage import dynamo

    calls: list[str] = []

    def count(event_name: str, **_: Any) -> None:
        calls.append(event_name.rsplit(".", 1)[-1])

    dynamo.client().meta.events.register("before-send.dynamodb.*", count)
    _, key = keys.create(owner="bench", plan="startup", rpm=10**9, tpm=10**12, monthly_credit=Decimal(10**6))
    plan = plans.effective(key.record)
    rows: dict[str, dict[str, list[float]]] = {
        "admission": {"ms": [], "calls": []},
        "settlement": {"ms": [], "calls": []},
    }
    first: dict[str, list[str]] = {}
    for i in range(args.requests):
        rid = f"req_{uuid.uuid4().hex}"
        calls.clear()
        started = time.perf_counter()
        held = admission.admit_sync(key.key_id, rid, plan, Decimal("0.002"), 1500)
        rows["admission"]["ms"].append((time.perf_counter() - started) * 1000)
        rows["admission"]["calls"].append(len(calls))
        if i == 0:
            first["admission"] = list(calls)
        calls.clear()
        started = time.perf_counter()
        sample = Sample(120, 40, Decimal("0.000124"), False, 900, 150)
        record = {"id": f"chatcmpl-{uuid.uuid4().hex}", "model": "bench", "provider": "bench"}
        settlement.settle_sync(held.reservation, sample, "bench", "bench", record)
        rows["settlement"]["ms"].append((time.perf_counter() - started) * 1000)
        rows["settlement"]["calls"].append(len(calls))
        if i == 0:
            first["settlement"] = list(calls)

    print(f"{args.requests} requests on one key, local DynamoDB emulator (moto)\n")
    print("| step | DynamoDB round trips per request | first request | p50 ms | p99 ms |")
    print("|---|---|---|---|---|")
    for step, data in rows.items():
        steady = statistics.mean(data["calls"][1:]) if len(data["calls"]) > 1 else data["calls"][0]
        print(
            f"| {step} | {steady:.2f} | {len(first[step])} ({', '.join(first[step])}) | "
            f"{percentile(data['ms'], 0.5):.2f} | {percentile(data['ms'], 0.99):.2f} |"
        )


if __name__ == "__main__":
    main()
