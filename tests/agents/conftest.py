"""The coding-agent tier: the real Claude Code and Codex CLIs (and the openai-agents SDK) through the
local gateway, onto a scripted upstream, on a free-plan key.

    agent -> recording proxy -> gateway-local (+ moto's DynamoDB) -> scripted upstream

Everything listens on 127.0.0.1; the agents' telemetry, update checks and plugins are off.
`make agents` runs this tier alone. The CLIs are installed from npm on first use (clis.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.agents import clis, gateway
from tests.agents.proxy import RecordingProxy
from tests.agents.upstream import ScriptedUpstream


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Real servers and child processes: kept out of `make test-fast` with the other e2e tests."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker("e2e")


@pytest.fixture(scope="session")
def agent_clis() -> clis.Agents:
    """Claude Code and Codex at their pinned versions (skips without node/npm, fails so under CI)."""
    installed = clis.install()
    print(f"\n[agents] {installed.versions}")
    return installed


@dataclass
class AgentStack:
    upstream: ScriptedUpstream
    gateway: gateway.LocalGateway
    proxy: RecordingProxy

    @property
    def base_url(self) -> str:
        """What the agents are given: the proxy in front of the gateway (no /v1)."""
        return self.proxy.url


@pytest.fixture(scope="session")
def agent_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentStack]:
    upstream = ScriptedUpstream().start()
    local = None
    proxy = None
    try:
        local = gateway.start(upstream.url, tmp_path_factory.mktemp("agents-gateway"))
        proxy = RecordingProxy(local.url).start()
        yield AgentStack(upstream=upstream, gateway=local, proxy=proxy)
    finally:
        if proxy is not None:
            proxy.stop()
        if local is not None:
            local.stop()
        upstream.stop()


@pytest.fixture
def stack(agent_stack: AgentStack, tmp_path: Path) -> AgentStack:
    """The stack with its records cleared and the upstream told this test's work directory."""
    agent_stack.upstream.reset(workdir=str(tmp_path / "work"))
    agent_stack.proxy.reset()
    return agent_stack


@pytest.fixture
def free_key(agent_stack: AgentStack, request: pytest.FixtureRequest) -> str:
    """A new key on the free plan for each test (its own minute window and free requests)."""
    return agent_stack.gateway.free_key(owner=f"{request.node.name}@agents.example")[0]
