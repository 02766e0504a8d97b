"""API-key authentication (a bearer token, or `x-api-key`): the key is hashed, looked up (briefly cached)
and never kept or logged."""

from __future__ import annotations

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


async def require_key(request: Request) -> keys.ApiKey:
    token = _token(request)
    key = await keys.authenticate(keys.hash_key(token))
    if key is None:
        raise authentication_error(f"Incorrect API key provided: {keys.display_prefix(token)}.")
    if key.expired:
        raise authentication_error(f"The API key {key.prefix} expired at {key.record['expires_at']}.")
    if not key.active:
        raise authentication_error(f"The API key {key.prefix} has been {key.status}.")
    request.state.key = key
    return key
