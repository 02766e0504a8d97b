"""OpenAI-style errors: one exception type that every layer raises and one body shape clients parse."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

REDACTED = "[redacted]"
# What a credential looks like in a provider's error text (some echo the key they were sent, or
# part of it): each pattern keeps its group 1 (a label) and replaces the secret after it.
_CREDENTIALS = [
    re.compile(p)
    for p in (
        r"()\bsk-[A-Za-z0-9_*-]{6,}",  # OpenAI, Anthropic (sk-ant-...), and most OpenAI-compatible servers
        r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=*-]{6,}",
        r"()\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",  # AWS access key ids
        r"()\bAIza[0-9A-Za-z_-]{35}",  # Google API keys
        r"()\b(?:gh[pousr]_[A-Za-z0-9]{20,}|xox[abprs]-[A-Za-z0-9-]{10,})",  # GitHub and Slack tokens
        r"(?i)(\b(?:x-)?api[_-]?key[\"']?\s*[=:]\s*[\"']?)[^\s\"',;]+",
        # a long token right after a word naming a secret: "token abc...", "secret_key=...", "password: ..."
        r"(?i)((?:key|token|secret|password|credential)s?[\"']?\s*[=:\s]\s*[\"']?)[A-Za-z0-9+/_=.-]{32,}",
    )
]


class GatewayError(Exception):
    """An error a client sees as `{"error": {message, type, param, code}}` with `status`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})  # more fields of the error object (the unified API's retry_after)
        if status < 500 and status not in (408, 409, 429):
            # The SDKs retry 408/409/429/5xx; anything else is the caller's to fix.
            self.headers.setdefault("x-should-retry", "false")

    def rename(self, param: str | None) -> GatewayError:
        """The same error with its parameter named as the caller's protocol spells it, in `param` and the message."""
        if self.param and param and param != self.param:
            self.message = self.message.replace(f"'{self.param}'", f"'{param}'")
            self.param = param
        return self

    def located(self, locate: Callable[[str], str]) -> GatewayError:
        """The error with its parameter named by `locate`: an ingress's map from canonical parameters back to
        the fields its caller sent (the one way every protocol names the caller's own fields)."""
        return self.rename(locate(self.param)) if self.param else self

    def body(self) -> dict[str, Any]:
        error = {"message": self.message, "type": self.type, "param": self.param, "code": self.code, **self.extra}
        return {"error": error}


def scrub(text: str) -> str:
    """Provider text with anything that looks like a credential replaced, before a client or a log sees it.

    Upstream error messages are passed on because they say what to fix, but some quote the key
    the gateway sent ("Incorrect API key provided: sk-...") and that key is the operator's.
    """
    for pattern in _CREDENTIALS:
        text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
    return text


def invalid_request(message: str, param: str | None = None, code: str | None = None) -> GatewayError:
    return GatewayError(400, message, param=param, code=code)


def authentication_error(message: str) -> GatewayError:
    return GatewayError(401, message, type="authentication_error", code="invalid_api_key")


def model_not_found(model: str, param: str | None = "model") -> GatewayError:
    return GatewayError(
        404,
        f"The model `{model}` does not exist or you do not have access to it.",
        param=param,
        code="model_not_found",
    )


def upstream_error(message: str) -> GatewayError:
    return GatewayError(502, message, type="upstream_error", code="upstream_error")


def upstream_timeout(seconds: float, connecting: bool = False) -> GatewayError:
    what = "could not be reached" if connecting else "did not answer"
    return GatewayError(
        504,
        f"The upstream provider {what} within {seconds:g} seconds.",
        type="timeout_error",
        code="upstream_timeout",
    )


def retry_soon(message: str, code: str, seconds: int = 1) -> GatewayError:
    """A 503 the caller may simply retry (the SDKs do): the gateway's own store was busy or unreachable."""
    return GatewayError(
        503,
        message,
        type="server_error",
        code=code,
        headers={"Retry-After": str(seconds), "retry-after-ms": str(seconds * 1000)},
    )


def service_unavailable(message: str, retry_after: int = 30) -> GatewayError:
    return GatewayError(
        503,
        message,
        type="service_unavailable",
        code="no_provider_available",
        headers={"Retry-After": str(retry_after), "retry-after-ms": str(retry_after * 1000)},
        extra={"retry_after": retry_after},
    )
