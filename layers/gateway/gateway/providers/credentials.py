"""Provider credentials: the environment first (local runs), then the Secrets Manager secret (AWS).

The secret is one JSON object whose fields are named like the environment variables
(`{"OPENAI_API_KEY": "...", ...}`), read through Powertools Parameters with a five-minute
cache, so rotating a key takes effect without a deploy and costs one read per instance.

Only the chat function reads the secret. The models and stats functions only need to know which
credentials are set, so they read the list of the secret's field names instead: a plain SSM
String parameter (`PROVIDER_KEY_NAMES_PARAMETER`) that `gateway-admin set-provider-key` rewrites
with every change. Their IAM role cannot read a single provider key.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from gateway import caches
from gateway.config import settings

SECRET_MAX_AGE_SECONDS = 300
PARAMETERS_MODULE = "aws_lambda_powertools.utilities.parameters"


def forget() -> None:
    """Forget the secret and the list of names read so far (Powertools caches them per process)."""
    parameters = sys.modules.get(PARAMETERS_MODULE)  # never imported: nothing was read
    if parameters is not None:
        parameters.clear_caches()


caches.register(forget, f"{__name__}.forget")


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


def _names() -> list[str]:
    """The names of the credentials the secret holds, from the non-secret list; none without one."""
    parameter = settings().provider_key_names_parameter
    if not parameter:
        return []
    from aws_lambda_powertools.utilities import parameters

    value = parameters.get_parameter(parameter, transform="json", max_age=SECRET_MAX_AGE_SECONDS)
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def listed(name: str | None) -> bool:
    """Whether credential `name` is set, learned without reading any credential: the environment, then the list."""
    if not name:
        return False
    return bool(os.environ.get(name)) or name in _names()
