"""Bearer-key authentication: the key is hashed, looked up (briefly cached) and never kept or logged."""

from __future__ import annotations

from starlette.requests import Request

from gateway.accounts import keys
from gateway.errors import authentication_error


async def require_key(request: Request) -> keys.ApiKey:
    header = request.headers.get("authorization")
    if not header:
        raise authentication_error(
            "You didn't provide an API key. Send it in the Authorization header as 'Bearer sk-...'."
        )
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not keys.KEY_PATTERN.match(token):
        raise authentication_error("The API key is malformed. Send it as 'Authorization: Bearer sk-...'.")
    key = await keys.authenticate(keys.hash_key(token))
    if key is None:
        raise authentication_error(f"Incorrect API key provided: {keys.display_prefix(token)}.")
    if key.expired:
        raise authentication_error(f"The API key {key.prefix} expired at {key.record['expires_at']}.")
    if not key.active:
        raise authentication_error(f"The API key {key.prefix} has been {key.status}.")
    request.state.key = key
    return key
