"""API-key authentication as a FastAPI dependency: a bearer token, or `x-api-key`; the key is hashed,
looked up (briefly cached) and never kept or logged.

The two security schemes declare both ways in the OpenAPI document; the key itself is read here,
so a malformed header gets the gateway's own message rather than a generic 403.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Security
from fastapi.security import APIKeyHeader, HTTPBearer
from starlette.requests import Request

from gateway.accounts import keys
from gateway.errors import authentication_error


def _token(request: Request) -> str:
    """The key from `Authorization: Bearer` or, as Anthropic's clients send it, `x-api-key`.

    Claude Code sends the former with ANTHROPIC_AUTH_TOKEN and the latter with ANTHROPIC_API_KEY.
    """
    header = request.headers.get("authorization")
    if header:
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not keys.KEY_PATTERN.match(token):
            raise authentication_error("The API key is malformed. Send it as 'Authorization: Bearer sk-...'.")
        return token
    token = (request.headers.get("x-api-key") or "").strip()
    if not token:
        raise authentication_error(
            "You didn't provide an API key. Send it in the Authorization header as 'Bearer sk-...'."
        )
    if not keys.KEY_PATTERN.match(token):
        raise authentication_error("The API key is malformed. Send it as 'x-api-key: sk-...'.")
    return token


BEARER = HTTPBearer(auto_error=False, bearerFormat="sk-...", description="`Authorization: Bearer sk-...`")
X_API_KEY = APIKeyHeader(name="x-api-key", auto_error=False, description="Anthropic's clients send the key so.")


async def require_key(
    request: Request, _bearer: Annotated[object, Security(BEARER)], _x_api_key: Annotated[object, Security(X_API_KEY)]
) -> keys.ApiKey:
    token = _token(request)
    key = await keys.authenticate(keys.hash_key(token))
    if key is None:
        raise authentication_error(f"Incorrect API key provided: {keys.display_prefix(token)}.")
    if key.expired:
        raise authentication_error(f"The API key {key.prefix} expired at {key.record['expires_at']}.")
    if not key.active:
        raise authentication_error(f"The API key {key.prefix} has been {key.status}.")
    return key


Key = Annotated[keys.ApiKey, Depends(require_key)]
"""A route parameter of this type gets the caller's active key, or the route answers 401."""
