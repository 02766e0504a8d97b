"""Codex (`codex exec`) through the gateway's /v1/responses, on a free-plan key.

Three shapes, by what Codex knows of the model id:
- `agent-model`: unknown, fallback metadata; function tools (exec_command) and a namespace;
- `gpt-5.5`: shipped metadata; a custom (freeform, lark grammar) apply_patch tool and client tool_search;
- `gpt-6.2-sol`: its default, code mode; no top-level tools but an `additional_tools` input item
  whose `functions` namespace holds the custom `exec` tool (JavaScript).
"""

from __future__ import annotations

import pytest

from tests.agents import clis
from tests.agents.conftest import AgentStack
from tests.agents.run import check_task, codex, report

CASES = {
    "agent-model": "exec_command",
    "gpt-5.5": "apply_patch",
    "gpt-6.2-sol": "exec",
}


@pytest.mark.parametrize("model", list(CASES))
def test_codex_exec(model: str, agent_clis: clis.Agents, stack: AgentStack, free_key: str, tmp_path) -> None:
    run = codex(agent_clis.codex, stack.base_url, free_key, model, tmp_path)
    print(report(run, stack.proxy, stack.upstream))
    check_task(run, stack.proxy, stack.upstream, stack.gateway.url, free_key, model)
    assert all(e.path.startswith("/v1/responses") for e in stack.proxy.exchanges)
    called = next(s.answer for s in stack.upstream.seen if s.answer.startswith("tool:"))
    assert called.rsplit(".", 1)[-1].rsplit("__", 1)[-1].endswith(CASES[model]), called
    warnings = [line for line in run.stderr.splitlines() if " ERROR " in line or "error" in line.lower()]
    print("  codex errors/warnings:", *warnings[:20], sep="\n    ")
