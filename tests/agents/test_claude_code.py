"""Claude Code (`claude -p`) through the gateway's /v1/messages, on a free-plan key and a Sonnet-sized model.

Claude Code does not know the id `agent-sonnet`, so it sends what it sends for new models: a
role `system` message at messages[1] and the mid-conversation-tool-changes beta among others.
"""

from __future__ import annotations

from tests.agents import clis
from tests.agents.conftest import AgentStack
from tests.agents.run import check_task, claude_code, report

MODEL = "agent-sonnet"


def _sent_betas(stack: AgentStack) -> set[str]:
    betas = set()
    for exchange in stack.proxy.exchanges:
        betas |= {b.strip() for b in exchange.headers.get("anthropic-beta", "").split(",") if b.strip()}
    return betas


def test_claude_code_streamed(agent_clis: clis.Agents, stack: AgentStack, free_key: str, tmp_path) -> None:
    run = claude_code(agent_clis.claude, stack.base_url, free_key, MODEL, tmp_path)
    print(report(run, stack.proxy, stack.upstream))
    print(f"  betas sent: {sorted(_sent_betas(stack))}")
    check_task(run, stack.proxy, stack.upstream, stack.gateway.url, free_key, MODEL)
    first = stack.proxy.exchanges[0]
    assert first.path.startswith("/v1/messages"), first.path
    assert all(e.body.get("stream") is True for e in stack.proxy.exchanges), "Claude Code streams by default"
    # One request a turn: nothing was refused and re-sent in another shape.
    assert len(stack.proxy.exchanges) == 2, report(run, stack.proxy, stack.upstream)
    assert all(s.stream for s in stack.upstream.seen)


def test_claude_code_whole_after_broken_streams(
    agent_clis: clis.Agents, stack: AgentStack, free_key: str, tmp_path
) -> None:
    """Streams cut after their first chunk (up to two, until a whole request comes): Claude Code re-asks
    without streaming (stream: false, as it does after broken streams)."""
    stack.upstream.reset(workdir=str(tmp_path / "work"), cut_streams=2)
    run = claude_code(agent_clis.claude, stack.base_url, free_key, MODEL, tmp_path)
    print(report(run, stack.proxy, stack.upstream))
    check_task(run, stack.proxy, stack.upstream, stack.gateway.url, free_key, MODEL, allow_cut=True)
    whole = [e for e in stack.proxy.exchanges if e.body.get("stream") is False]
    assert whole, "Claude Code never fell back to a whole (non-streamed) request"
    assert all(not e.refused for e in whole)
    cut = [s for s in stack.upstream.seen if s.answer == "cut"]
    assert 1 <= len(cut) <= 2
    assert any(not s.stream for s in stack.upstream.seen), "the whole request reached the upstream whole"
