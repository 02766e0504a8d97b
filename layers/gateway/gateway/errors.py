"""OpenAI-style errors: one exception type that every layer raises and one body shape clients parse."""

from __future__ import annotations

from typing import Any


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
        self.extra = dict(extra or {})  # more fields of the error object (seed 002's retry_after)
        if status < 500 and status not in (408, 409, 429):
            # The SDKs retry 408/409/429/5xx; anything else is the caller's to fix.
            self.headers.setdefault("x-should-retry", "false")

    def body(self) -> dict[str, Any]:
        error = {"message": self.message, "type": self.type, "param": self.param, "code": self.code, **self.extra}
        return {"error": error}


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


def upstream_timeout(seconds: float) -> GatewayError:
    return GatewayError(
        504,
        f"The upstream provider did not answer within {seconds:g} seconds.",
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
