"""The statistics as the API shows them: money rendered, sums made averages, records under OpenRouter's names.

Nothing here reads storage: each function turns figures already read (stats/queries.py, accounts/)
into the fields clients parse, so the shapes are testable without a table.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from gateway.catalog import catalog
from gateway.stats import counters


def number(value: Any) -> int | float:
    """USD as a JSON number, for OpenRouter's shapes (/v1/key, /v1/credits, /v1/generation): typed
    clients add these up. The float's shortest form is the decimal's own up to 15 digits."""
    d = Decimal(value)
    return int(d) if d == d.to_integral_value() else float(d)


def money(value: Any) -> str:
    """Exact USD as a plain decimal string ("0.000125", never "1.25E-4", never a float)."""
    d = Decimal(value)
    return format(d.normalize(), "f") if d else "0"


def present(totals: dict[str, Any]) -> dict[str, Any]:
    """A period's figures as the API shows them (sums of latencies become averages; money a string)."""
    s = counters.summary(totals)
    return {
        "requests": s["requests"],
        "errors": s["errors"],
        "streams": s["streams"],
        "prompt_tokens": s["prompt_tokens"],
        "completion_tokens": s["completion_tokens"],
        "total_tokens": s["total_tokens"],
        "cost": money(s["cost"]),
        "avg_latency_ms": s["avg_latency_ms"],
        "avg_ttft_ms": s["avg_ttft_ms"],
        "success_rate": s["success_rate"],
    }


def margins(totals: dict[str, Any]) -> dict[str, Any]:
    """The operator's view of a period: what keys paid, what providers charge for it, and the difference."""
    return {
        "revenue": money(totals["cost"]),
        "provider_cost": money(totals["provider_cost"]),
        "margin": money(totals["cost"] - totals["provider_cost"]),
    }


def point(day: str, totals: dict[str, Any]) -> dict[str, Any]:
    """One day of a chart."""
    return {
        "date": day,
        "requests": totals["requests"],
        "tokens": totals["prompt_tokens"] + totals["completion_tokens"],
        "cost": money(totals["cost"]),
        "errors": totals["errors"],
    }


UNIFIED = {
    "requests_today": "requests",
    "tokens_used": "total_tokens",
    "avg_latency": "avg_latency_ms",
    "success_rate": "success_rate",
}


def unified_fields(today: dict[str, Any], active: int) -> dict[str, Any]:
    """The unified API's five statistics, for today (UTC): four of the summary's, under its names."""
    s = counters.summary(today)
    return {
        **{name: s[field] for name, field in UNIFIED.items()},
        "success_rate": s["success_rate"],
        "active_providers": active,
    }


def credit_fields(credit: dict[str, Decimal], render: Callable[[Any], Any] = money) -> dict[str, Any]:
    """An account's credit split (accounts.account.credit_view), as strings or, for OpenRouter's shapes, numbers."""
    return {
        "balance": render(credit["balance"]),
        "monthly_remaining": render(credit["monthly"]),
        "purchased_remaining": render(credit["purchased"]),
        "reserved": render(credit["reserved"]),
        "debt": render(credit["debt"]),
    }


def _int(value: Any) -> int | None:
    return int(value) if value is not None else None


def _iso(ts: Any) -> str | None:
    return datetime.fromtimestamp(int(ts), UTC).isoformat(timespec="seconds") if ts is not None else None


def generation_view(record: dict[str, Any]) -> dict[str, Any]:
    """A generation record under OpenRouter's names, with ours alongside."""
    providers = catalog().providers
    pid = record.get("provider")
    prompt = _int(record.get("prompt_tokens")) or 0
    completion = _int(record.get("completion_tokens")) or 0
    latency = _int(record.get("latency_ms"))
    ttft = _int(record.get("ttft_ms"))
    cost = number(record.get("cost", 0))
    return {
        "id": record["id"],
        "model": record.get("model"),
        "provider": pid,
        "provider_name": providers[pid].name if pid in providers else pid,
        "upstream_model": record.get("upstream_model"),
        "total_cost": cost,
        "usage": cost,
        "cost": cost,
        "tokens_prompt": prompt,
        "tokens_completion": completion,
        "native_tokens_prompt": prompt,
        "native_tokens_completion": completion,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "usage_reported": bool(record.get("usage_reported")),
        "latency": latency,
        "latency_ms": latency,
        "ttft_ms": ttft,
        "generation_time": latency - ttft if latency is not None and ttft is not None else latency,
        "finish_reason": record.get("finish_reason"),
        "native_finish_reason": record.get("finish_reason"),
        "streamed": bool(record.get("streamed")),
        "cancelled": record.get("status") == "cancelled",
        "status": record.get("status"),
        "http_status": _int(record.get("http_status")),
        "error": record.get("error"),
        "request_id": record.get("request_id"),
        "created": _int(record.get("created")),
        "created_at": _iso(record.get("created")),
        "expires_at": _iso(record.get("expires_at")),
    }
