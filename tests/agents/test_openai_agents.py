"""The openai-agents SDK through the gateway, on Responses and on chat completions, streamed and whole.

Its one function tool, write_file(path, content), is what the scripted upstream calls.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.agents import sdk
from tests.agents.conftest import AgentStack
from tests.agents.run import AGENT_TIMEOUT, check_task, report, run_command

MODEL = "agent-sonnet"


@pytest.fixture(scope="session")
def agents_sdk() -> Path:
    return sdk.install()


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
@pytest.mark.parametrize("api", ["responses", "chat"])
def test_openai_agents_sdk(
    api: str, stream: bool, agents_sdk: Path, stack: AgentStack, free_key: str, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    args, env = sdk.command(agents_sdk, stack.base_url, free_key, MODEL, api, stream)
    run = run_command(f"openai-agents {sdk.PACKAGE[1]} {api} {'streamed' if stream else 'whole'}", args, env, work,
               AGENT_TIMEOUT)  # fmt: skip
    print(report(run, stack.proxy, stack.upstream))
    check_task(run, stack.proxy, stack.upstream, stack.gateway.url, free_key, MODEL)
    path = "/v1/responses" if api == "responses" else "/v1/chat/completions"
    assert all(e.path == path for e in stack.proxy.exchanges), [e.path for e in stack.proxy.exchanges]
    assert all(bool(e.body.get("stream")) is stream for e in stack.proxy.exchanges)
