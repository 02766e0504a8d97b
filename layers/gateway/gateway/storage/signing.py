"""AWS credentials as Lambda hands them out, and Signature Version 4 for DynamoDB's JSON protocol.

Lambda gives a function its role's credentials in the environment (`AWS_ACCESS_KEY_ID`, ...), except
under SnapStart, where each restored copy fetches them from the container credentials endpoint
(`AWS_CONTAINER_CREDENTIALS_FULL_URI` with `AWS_CONTAINER_AUTHORIZATION_TOKEN`): they are read again
before they expire, and forgotten on restore with every other cache. Other sources (profiles, SSO)
are boto3's, which the admin tool keeps.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from gateway import caches

REFRESH_BEFORE_SECONDS = 600  # botocore's mandatory refresh: credentials are renewed 10 minutes before expiry


@dataclass(frozen=True, slots=True)
class Credentials:
    access_key: str
    secret_key: str
    token: str | None = None
    expires_at: float | None = None  # epoch seconds; None for credentials that do not expire

    def fresh(self, now: float) -> bool:
        return self.expires_at is None or now < self.expires_at - REFRESH_BEFORE_SECONDS


class NoCredentials(RuntimeError):
    pass


def from_environment() -> Credentials | None:
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not key or not secret:
        return None
    return Credentials(key, secret, os.environ.get("AWS_SESSION_TOKEN") or None)


def container_request() -> tuple[str, dict[str, str]] | None:
    """Where the container credentials endpoint is, and the header it wants, if this environment has one."""
    full = os.environ.get("AWS_CONTAINER_CREDENTIALS_FULL_URI")
    relative = os.environ.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
    if not full and not relative:
        return None
    url = full or f"http://169.254.170.2{relative}"
    token = os.environ.get("AWS_CONTAINER_AUTHORIZATION_TOKEN")
    token_file = os.environ.get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
    if token_file:
        with open(token_file) as f:
            token = f.read().strip()
    return url, ({"Authorization": token} if token else {})


def from_container_answer(data: dict[str, str]) -> Credentials:
    expires = data.get("Expiration")
    return Credentials(
        data["AccessKeyId"],
        data["SecretAccessKey"],
        data.get("Token") or None,
        datetime.fromisoformat(expires.replace("Z", "+00:00")).timestamp() if expires else None,
    )


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


@caches.resettable
@lru_cache(maxsize=8)
def _signing_key(secret: str, day: str, region: str, service: str) -> bytes:
    return _hmac(_hmac(_hmac(_hmac(f"AWS4{secret}".encode(), day), region), service), "aws4_request")


def sign(
    credentials: Credentials,
    region: str,
    host: str,
    headers: dict[str, str],
    body: bytes,
    service: str = "dynamodb",
    now: float | None = None,
) -> dict[str, str]:
    """`headers` (lower-case names) plus the date, token and Authorization of a SigV4-signed POST to `/`."""
    stamp = datetime.fromtimestamp(time.time() if now is None else now, UTC).strftime("%Y%m%dT%H%M%SZ")
    day = stamp[:8]
    signed = {**headers, "host": host, "x-amz-date": stamp}
    if credentials.token:
        signed["x-amz-security-token"] = credentials.token
    names = sorted(signed)
    canonical = "\n".join(
        [
            "POST",
            "/",
            "",
            *(f"{name}:{' '.join(signed[name].split())}" for name in names),
            "",
            ";".join(names),
            hashlib.sha256(body).hexdigest(),
        ]
    )
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    signature = hmac.new(
        _signing_key(credentials.secret_key, day, region, service), to_sign.encode(), hashlib.sha256
    ).hexdigest()
    signed["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    del signed["host"]  # the HTTP client sends it from the URL
    return signed
