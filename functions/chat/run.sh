#!/bin/bash
# Started by the Lambda Web Adapter (AWS_LAMBDA_EXEC_WRAPPER=/opt/bootstrap); it proxies each
# invocation to this uvicorn server and streams the response back through API Gateway.
export PYTHONPATH="/opt/python:${LAMBDA_TASK_ROOT}:${PYTHONPATH}"
exec python -m uvicorn main:app --host 127.0.0.1 --port "${PORT:-8080}" --no-access-log --log-level warning \
  --timeout-keep-alive 300
