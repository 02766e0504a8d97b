"""API keys for the end-to-end tests."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

# Keys for the end-to-end tests get room enough that no limit or balance gets in a test's way;
# the tests of limits themselves pass their own values.
E2E_KEY_FIELDS: dict[str, Any] = {
    "plan": "startup",
    "rpm": 100_000,
    "tpm": 100_000_000,
    "monthly_credit": Decimal(1000),
}


def make_key(owner: str = "e2e@example.com", name: str = "e2e", **fields: Any) -> tuple[str, Any]:
    """The one place tests create API keys: returns (the key itself, its ApiKey record).

    `fields` (plan, rpm, tpm, free_requests, monthly_credit, allowed_models, expires_at) replace
    the generous defaults. Needs the gateway's environment applied (the `e2e_env` fixture).
    """
    from gateway.accounts import keys

    return keys.create(owner=owner, name=name, **{**E2E_KEY_FIELDS, **fields})
