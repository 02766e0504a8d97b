"""gateway-admin in this process, and what it stored in a deployed stack (conftest's `deployed`, under mock_aws)."""

from __future__ import annotations

import contextlib
import io
import json
from unittest import mock

import boto3

from gateway.admin import cli

REGION = "us-east-1"
FAKE_AWS_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


def stored(deployed: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """(the secret's keys, the parameter's names) as the functions would read them."""
    secret = boto3.client("secretsmanager", region_name=REGION).get_secret_value(SecretId=deployed["secret"])
    parameter = boto3.client("ssm", region_name=REGION).get_parameter(Name=deployed["parameter"])
    return json.loads(secret["SecretString"]), json.loads(parameter["Parameter"]["Value"])


def run_admin(*args: str, stdin: str = "") -> tuple[int, str, str]:
    """gateway-admin in this process (mock_aws is in-process), with `stdin` as its standard input."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), mock.patch("sys.stdin", io.StringIO(stdin)):
        try:
            cli.main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
            err.write(str(exc.code) if not isinstance(exc.code, int) else "")
    return code, out.getvalue(), err.getvalue()
