"""Anthropic's error types, both ways: the status each comes with, and the type each status is written as."""

from __future__ import annotations

# Anthropic's error types by status (its API reference, "Errors").
TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    503: "overloaded_error",
    529: "overloaded_error",
}
# The HTTP status each documented error type comes with, for errors that arrive mid-stream.
ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

# Anthropic's error type for the canonical error object a stream ends with (it carries no status).
STREAM_ERROR_TYPES = {"timeout_error": "timeout_error", "invalid_request_error": "invalid_request_error"}
