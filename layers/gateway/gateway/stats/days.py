"""UTC days, weeks and months as the statistics count them (a day's counters are keyed by its ISO date)."""

from __future__ import annotations

import calendar
import time
from datetime import UTC, date, datetime, timedelta


def today(now: float | None = None) -> date:
    return datetime.fromtimestamp(now if now is not None else time.time(), UTC).date()


def month_days(day: date) -> list[str]:
    """Every day of `day`'s month up to and including `day` (a chart of the month so far)."""
    return [day.replace(day=d).isoformat() for d in range(1, day.day + 1)]


def month_bounds(day: date) -> tuple[str, str]:
    last = calendar.monthrange(day.year, day.month)[1]
    return day.replace(day=1).isoformat(), day.replace(day=last).isoformat()


def week_start(day: date) -> date:
    """Monday of `day`'s UTC week (OpenRouter's usage_weekly)."""
    return day - timedelta(days=day.weekday())


def day_start(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
