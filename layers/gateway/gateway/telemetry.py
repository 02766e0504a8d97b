"""Logs and metrics: one structured line and one EMF record per request, never a key or a prompt.

The chat function runs under uvicorn, not a Lambda handler, so metrics are flushed per
request rather than by Powertools' handler decorator; EMF lines go to stdout, which Lambda
ships to CloudWatch Logs, where they become metrics without an API call.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

import orjson
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from gateway import caches

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "llm-gateway")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "LLMGateway")
# Prompts and answers stay out of logs unless the operator turns this on for debugging.
LOG_CONTENT = os.environ.get("GATEWAY_LOG_CONTENT", "").lower() in ("1", "true", "yes")

# orjson writes each line in a fraction of json.dumps's time: every request logs at least one.
logger = Logger(service=SERVICE, json_serializer=lambda record: orjson.dumps(record, default=str).decode())


@caches.resettable
@lru_cache(maxsize=1)
def metrics() -> Metrics:
    m = Metrics(namespace=NAMESPACE, service=SERVICE)
    return m


def cold_start(function: str) -> None:
    """Once per process: a ColdStart metric, as Powertools' decorator would emit."""
    m = metrics()
    m.add_dimension(name="function", value=function)
    m.add_metric(name="ColdStart", unit=MetricUnit.Count, value=1)
    m.flush_metrics()


def request_done(fields: dict[str, Any]) -> None:
    """Log the request's outcome and emit its metrics by model and provider."""
    logger.info("chat completion", extra=fields)
    m = metrics()
    m.add_dimension(name="model", value=str(fields.get("model") or "unknown"))
    m.add_dimension(name="provider", value=str(fields.get("provider") or "none"))
    m.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
    m.add_metric(name="Errors", unit=MetricUnit.Count, value=int(fields.get("status") != "ok"))
    m.add_metric(name="PromptTokens", unit=MetricUnit.Count, value=fields.get("prompt_tokens", 0))
    m.add_metric(name="CompletionTokens", unit=MetricUnit.Count, value=fields.get("completion_tokens", 0))
    m.add_metric(name="CostMicroUSD", unit=MetricUnit.Count, value=float(fields.get("cost") or 0) * 1_000_000)
    m.add_metric(name="Latency", unit=MetricUnit.Milliseconds, value=fields.get("latency_ms", 0))
    if fields.get("ttft_ms") is not None:
        m.add_metric(name="TimeToFirstToken", unit=MetricUnit.Milliseconds, value=fields["ttft_ms"])
    m.flush_metrics()
