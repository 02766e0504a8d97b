"""Plans, defined by the operator in a JSON file (GATEWAY_PLANS replaces the bundled one).

A key belongs to a plan and may override its limits and allowed models on its own record.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from gateway import caches
from gateway.stats.present import money

BUNDLED_PLANS = Path(__file__).resolve().parent.parent / "plans.json"
OVERRIDABLE = ("monthly_credit", "free_requests", "free_request_cost", "rpm", "tpm", "allowed_models")
MONEY = ("monthly_credit", "free_request_cost")
# The most one free request may cost, where a plan states none: a request that could cost more is paid.
DEFAULT_FREE_REQUEST_COST = Decimal("1")


@dataclass(frozen=True, slots=True)
class Plan:
    id: str
    name: str
    monthly_credit: Decimal  # USD granted at the start of every month; unused credit does not carry over
    free_requests: int  # requests a month that cost nothing
    rpm: int
    tpm: int
    allowed_models: tuple[str, ...] | None  # None: every model
    # A free request covers at most this much (its worst case, at the model's price): ten free requests
    # to the dearest model cost the operator at most ten times this.
    free_request_cost: Decimal = DEFAULT_FREE_REQUEST_COST

    def allows(self, model_id: str) -> bool:
        return self.allowed_models is None or model_id in self.allowed_models

    def view(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """The plan as /v1/stats and /v1/key show it, with the account's free requests used this month."""
        return {
            "id": self.id,
            "name": self.name,
            "monthly_credit": money(self.monthly_credit),
            "free_requests": self.free_requests,
            "free_requests_used": int(state.get("free_used", 0)),
            "free_request_cost": money(self.free_request_cost),
            "rpm": self.rpm,
            "tpm": self.tpm,
            "allowed_models": list(self.allowed_models) if self.allowed_models is not None else None,
        }


def _plan(pid: str, raw: Mapping[str, Any]) -> Plan:
    allowed = raw.get("allowed_models")
    return Plan(
        id=pid,
        name=raw.get("name", pid),
        monthly_credit=Decimal(str(raw.get("monthly_credit", "0"))),
        free_requests=int(raw.get("free_requests", 0)),
        rpm=int(raw["rpm"]),
        tpm=int(raw["tpm"]),
        allowed_models=tuple(allowed) if allowed is not None else None,
        free_request_cost=Decimal(str(raw.get("free_request_cost", DEFAULT_FREE_REQUEST_COST))),
    )


@caches.resettable
@lru_cache(maxsize=1)
def _document() -> tuple[str, dict[str, Plan]]:
    path = Path(os.environ.get("GATEWAY_PLANS") or BUNDLED_PLANS)
    raw = json.loads(path.read_text())
    plans = {pid: _plan(pid, p) for pid, p in raw["plans"].items()}
    return raw.get("default_plan", next(iter(plans))), plans


def default_plan() -> str:
    return _document()[0]


def all_plans() -> dict[str, Plan]:
    return _document()[1]


def get(plan_id: str) -> Plan:
    plans = all_plans()
    if plan_id not in plans:
        raise KeyError(f"unknown plan {plan_id!r}; known plans: {', '.join(plans)}")
    return plans[plan_id]


def effective(record: Mapping[str, Any]) -> Plan:
    """The key's plan with the key's own overrides applied."""
    plan = get(record.get("plan") or default_plan())
    overrides: dict[str, Any] = {}
    for name in OVERRIDABLE:
        value = record.get(name)
        if value is None:
            continue
        if name in MONEY:
            overrides[name] = Decimal(str(value))
        elif name == "allowed_models":
            overrides[name] = tuple(value)
        else:
            overrides[name] = int(value)
    return replace(plan, **overrides) if overrides else plan
