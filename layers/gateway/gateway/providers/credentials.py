"""Provider credentials: the environment first (local runs), then the Secrets Manager secret (AWS).

The secret is one JSON object whose fields are named like the environment variables
(`{"OPENAI_API_KEY": "...", ...}`), read through Powertools Parameters with a five-minute
cache, so rotating a key takes effect without a deploy and costs one read per instance.
"""

from __future__ import annotations

import os
from typing import Any

from gateway.config import settings

SECRET_MAX_AGE_SECONDS = 300


def _secret() -> dict[str, Any]:
    secret_id = settings().provider_secret_id
    if not secret_id:
        return {}
    from aws_lambda_powertools.utilities import parameters

    value = parameters.get_secret(secret_id, transform="json", max_age=SECRET_MAX_AGE_SECONDS)
    return value if isinstance(value, dict) else {}


def get(name: str | None) -> str | None:
    if not name:
        return None
    return os.environ.get(name) or _secret().get(name) or None
