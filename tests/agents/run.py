"""Running an agent on the task, offline, and checking what it did.

Each agent runs with a clean environment (a fresh HOME and work directory, no proxy variables),
its telemetry, error reporting, update checks and plugins off, the gateway (through the recording
proxy) as its only endpoint, and a timeout.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.agents.proxy import Exchange, RecordingProxy
from tests.agents.upstream import FILE_NAME, FILE_TEXT, FINAL_TEXT, ScriptedUpstream, tool_name

TASK = f"create {FILE_NAME} containing {FILE_TEXT}"
AGENT_TIMEOUT = 150  # seconds for one agent run: a passing run takes a few
LOOPBACK = "127.0.0.1,localhost"


@dataclass
class Run:
    label: str
    command: list[str]
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    workdir: Path

    def output(self) -> str:
        return f"--- stdout\n{self.stdout[-4000:]}\n--- stderr\n{self.stderr[-6000:]}"


def _base_env(home: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": str(home),
        "TERM": "dumb",
        "LANG": "C.UTF-8",
        "NO_PROXY": LOOPBACK,
        "no_proxy": LOOPBACK,
    }


def run_command(label: str, command: list[str], env: dict[str, str], workdir: Path, timeout: float) -> Run:
    started = time.monotonic()
    try:
        done = subprocess.run(
            command, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
        code, out, err = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as exc:
        code = None
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        err = (exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or "") + (
            f"\n[timed out after {timeout} s]"
        )
    return Run(label, command, code, out, err, time.monotonic() - started, workdir)


def claude_code(
    binary: Path, base_url: str, key: str, model: str, root: Path, extra_env: dict[str, str] | None = None,
    timeout: float = AGENT_TIMEOUT,
) -> Run:  # fmt: skip
    """`claude -p TASK --model MODEL` with ANTHROPIC_BASE_URL at the gateway (its default: streamed)."""
    home, work = root / "home", root / "work"
    home.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    env = _base_env(home) | {
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": key,
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_BUG_COMMAND": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "IS_SANDBOX": "1",  # --dangerously-skip-permissions is refused to root otherwise
        **(extra_env or {}),
    }
    command = [str(binary), "-p", TASK, "--model", model, "--dangerously-skip-permissions"]
    return run_command(f"claude-code {model}", command, env, work, timeout)


CODEX_CONFIG = """\
model_provider = "gateway"
{model_line}

[model_providers.gateway]
name = "LLM gateway"
base_url = "{base_url}"
wire_api = "responses"
env_key = "GATEWAY_API_KEY"

[analytics]
enabled = false

[feedback]
enabled = false

[features]
plugins = false
remote_plugin = false
"""


def codex(binary: Path, base_url: str, key: str, model: str | None, root: Path, timeout: float = AGENT_TIMEOUT) -> Run:
    """`codex exec TASK` with a config.toml whose provider is the gateway (`model` None: Codex's default)."""
    home, work = root / "home", root / "work"
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    model_line = f'model = "{model}"' if model else ""
    (codex_home / "config.toml").write_text(CODEX_CONFIG.format(model_line=model_line, base_url=f"{base_url}/v1"))
    env = _base_env(home) | {"CODEX_HOME": str(codex_home), "GATEWAY_API_KEY": key, "RUST_LOG": "warn"}
    command = [str(binary), "exec", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox", TASK]
    return run_command(f"codex {model or '(default)'}", command, env, work, timeout)


# --- what was sent, and the checks every test makes ----------------------------------------------


def _tools_of(body: dict[str, Any]) -> list[str]:
    """Tool names with their kinds; namespaces and Codex's additional_tools items opened."""

    def label(tool: dict[str, Any]) -> str:
        kind = tool.get("type") or "custom(anthropic)"
        if kind == "namespace":
            inner = ", ".join(label(t) for t in tool.get("tools") or ())
            return f"namespace {tool.get('name')}[{inner}]"
        name = tool.get("name") or tool_name(tool)
        return f"{name}:{kind}" + (":deferred" if tool.get("defer_loading") else "")

    names = [label(t) for t in body.get("tools") or () if isinstance(t, dict)]
    for item in body.get("input") or () if isinstance(body.get("input"), list) else ():
        if isinstance(item, dict) and item.get("type") == "additional_tools":
            names += [f"additional_tools> {label(t)}" for t in item.get("tools") or () if isinstance(t, dict)]
    return names


def describe(exchange: Exchange) -> str:
    body = exchange.body if isinstance(exchange.body, dict) else {}
    parts = [f"{exchange.method} {exchange.path} -> {exchange.status}", f"{len(exchange.raw)} B"]
    for name in ("model", "stream", "max_tokens", "max_output_tokens", "thinking", "reasoning", "tool_choice"):
        if name in body:
            parts.append(f"{name}={body[name]}")
    if isinstance(body.get("system"), list | str):
        parts.append(f"system {len(json.dumps(body['system']))} B")
    if "tools" in body:
        parts.append(f"tools {len(json.dumps(body['tools']))} B")
    messages = body.get("messages") or body.get("input")
    if isinstance(messages, list):
        roles = [
            m.get("role") if m.get("type") in (None, "message") else m["type"] for m in messages if isinstance(m, dict)
        ]
        parts.append(f"items {roles}")
    if "anthropic-beta" in exchange.headers:
        parts.append(f"betas [{exchange.headers['anthropic-beta']}]")
    line = ", ".join(str(p) for p in parts)
    admission = exchange.answer_headers
    if admission:
        shown = ("x-ratelimit-remaining-tokens", "x-ratelimit-remaining-requests", "x-gateway-cost", "retry-after")
        line += "\n      gateway: " + ", ".join(f"{k}={admission[k]}" for k in shown if k in admission)
    line += f"\n      tools: {_tools_of(body)}"
    if exchange.refused:
        line += f"\n      REFUSED: {exchange.answer_text[:1500]}"
    for error in exchange.stream_errors():
        line += f"\n      STREAM ERROR: {error[:1500]}"
    return line


def report(run: Run, proxy: RecordingProxy, upstream: ScriptedUpstream) -> str:
    lines = [f"=== {run.label}: exit {run.returncode} in {run.seconds:.1f} s"]
    lines.append(f"  agent -> gateway: {len(proxy.exchanges)} requests")
    lines += [f"    {describe(e)}" for e in proxy.exchanges]
    lines.append(f"  gateway -> upstream: {len(upstream.seen)} requests")
    lines += [f"    {s}" for s in upstream.summary()]
    return "\n".join(lines)


def generations(gateway_url: str, key: str) -> list[dict[str, Any]]:
    answer = httpx.get(
        f"{gateway_url}/v1/generations", params={"limit": 100}, headers={"authorization": f"Bearer {key}"},
        timeout=10, trust_env=False,
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def check_task(run: Run, proxy: RecordingProxy, upstream: ScriptedUpstream, gateway_url: str, key: str,
               model: str, allow_cut: bool = False) -> list[dict[str, Any]]:  # fmt: skip
    """What every agent test asserts: no request refused, the file written, exit 0, "done", the records."""
    refused = [describe(e) for e in proxy.exchanges if e.refused]
    assert not refused, "the gateway refused requests:\n" + "\n".join(refused) + "\n" + run.output()
    if not allow_cut:
        broken = [describe(e) for e in proxy.exchanges if e.stream_errors()]
        assert not broken, "streams ended in an error:\n" + "\n".join(broken) + "\n" + run.output()
    assert run.returncode == 0, f"{run.label} exited {run.returncode}\n{run.output()}"
    written = run.workdir / FILE_NAME
    assert written.exists(), f"{run.label} wrote no {FILE_NAME}\n{run.output()}"
    assert written.read_text().strip() == FILE_TEXT
    assert FINAL_TEXT in run.stdout, f"no final {FINAL_TEXT!r} in the output\n{run.output()}"
    answers = [s.answer for s in upstream.seen]
    assert any(a.startswith("tool:") for a in answers) and answers[-1] == "text", answers
    records = generations(gateway_url, key)
    for r in reversed(records):
        print(
            f"  generation: {r['status']} streamed={r['streamed']} prompt={r['prompt_tokens']} "
            f"completion={r['completion_tokens']} cost={r['cost']} usage_reported={r['usage_reported']}"
        )
    assert len(records) == len(upstream.seen), (records, upstream.summary())
    assert {r["model"] for r in records} == {model}, records
    if not allow_cut:
        assert all(r["status"] == "ok" and r["usage_reported"] for r in records), records
    return records
