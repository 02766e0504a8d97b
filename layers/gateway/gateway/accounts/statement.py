"""What a key's statement shows, read in one go: its plan, its account and its usage counters.

Each read costs a fixed number of DynamoDB calls whatever the traffic (tests/e2e/test_stats_calls.py);
the API renders the result (stats/present.py). Synchronous: the routes run these through `dynamo.call`.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from gateway.accounts import account, keys, plans
from gateway.stats import days, queries


def _account(key: keys.ApiKey) -> tuple[plans.Plan, dict[str, Any]]:
    plan = plans.effective(key.record)
    return plan, account.read(key.key_id, plan)


def month(key: keys.ApiKey, day: date) -> dict[str, Any]:
    """Plan, account, and the days of `day`'s month: GetItem + one Query."""
    plan, state = _account(key)
    first, last = days.month_bounds(day)
    by_day = queries.key_days(key.key_id, first, last)
    return {
        "plan": plan,
        "state": state,
        "today": by_day.get(day.isoformat(), queries.empty()),
        "month": queries.total(by_day.values()),
        "by_day": {d: by_day.get(d, queries.empty()) for d in days.month_days(day)},
    }


def usage(key: keys.ApiKey, day: date, week: bool) -> dict[str, Any]:
    """Plan, account, all-time and this month's usage (+ this week's and today's): GetItem + one or two Queries."""
    plan, state = _account(key)
    months = queries.key_months(key.key_id)
    read: dict[str, Any] = {
        "plan": plan,
        "state": state,
        "all_time": queries.total(months.values()),
        "month": months.get(day.isoformat()[:7], queries.empty()),
    }
    if week:
        by_day = queries.key_days(key.key_id, days.week_start(day).isoformat(), day.isoformat())
        read["week"] = queries.total(by_day.values())
        read["today"] = by_day.get(day.isoformat(), queries.empty())
    return read
