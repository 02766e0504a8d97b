"""The Lambda handler of a buffered function: Mangum around an app, traced and measured."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Tracer
from aws_lambda_powertools.metrics import MetricUnit
from fastapi import FastAPI
from mangum import Mangum

from gateway.api import snapstart
from gateway.telemetry import metrics


def mangum_handler(
    app: FastAPI,
    function: str,
    patch_modules: tuple[str, ...] = (),
    prime: Callable[[FastAPI], None] | None = None,
) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """Lifespan off: Mangum would run it on every invocation, so clients are built at import instead.

    The tracer patches only `patch_modules`: patching everything it knows imports botocore's
    documentation machinery, httpx and sqlite3 into every cold start, used or not. Under SnapStart
    the app is primed here (`prime`, from api/priming.py), during the init Lambda snapshots, and the
    runtime's hooks are registered.
    """
    if prime is not None and snapstart.snapshotting():
        prime(app)
    snapstart.register_runtime_hooks()
    tracer = Tracer(patch_modules=patch_modules)
    adapter = Mangum(app, lifespan="off")

    @tracer.capture_lambda_handler
    @metrics().log_metrics(capture_cold_start_metric=True)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        metrics().add_dimension(name="function", value=function)
        metrics().add_metric(name="Requests", unit=MetricUnit.Count, value=1)
        return adapter(event, context)

    return handler
