"""StatsFunction: the stats app under Mangum (lifespan off: Mangum would run it on every invocation)."""

from typing import Any

from aws_lambda_powertools import Tracer
from aws_lambda_powertools.metrics import MetricUnit
from mangum import Mangum

from gateway.api.app import stats_app
from gateway.telemetry import metrics

tracer = Tracer()
app = Mangum(stats_app(), lifespan="off")


@tracer.capture_lambda_handler
@metrics().log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    metrics().add_dimension(name="function", value="stats")
    metrics().add_metric(name="Requests", unit=MetricUnit.Count, value=1)
    return app(event, context)
