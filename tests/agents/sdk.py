"""The openai-agents SDK (PyPI `openai-agents`, pinned), installed with pip into a cache kept between runs.

It is not a dependency of the project: pip installs it and its dependencies with `--target` under
build/agents-py/, and each run is a child process with that directory first on PYTHONPATH, so
neither its packages nor its `agents` module reach the test process. Where pip cannot install it,
its tests skip (fail under CI=true).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.agents.clis import CI, ROOT, _locked, unavailable

PACKAGE = ("openai-agents", "0.25.0")
CACHE = ROOT / "build" / "agents-py" / f"{PACKAGE[0]}-{PACKAGE[1]}"
PIP_TIMEOUT = 300

# One agent run: a function tool that writes a file, the model on the gateway, tracing off.
SCRIPT = r'''
import asyncio, sys
from pathlib import Path
from openai import AsyncOpenAI
from agents import Agent, Runner, function_tool, set_tracing_disabled
from agents import OpenAIChatCompletionsModel, OpenAIResponsesModel

base_url, key, model_id, api, stream = sys.argv[1:6]
set_tracing_disabled(True)
client = AsyncOpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=60)


@function_tool
def write_file(path: str, content: str) -> str:
    """Write `content` into the file at `path`."""
    Path(path).write_text(content)
    return f"wrote {len(content)} characters to {path}"


Model = OpenAIResponsesModel if api == "responses" else OpenAIChatCompletionsModel
agent = Agent(
    name="writer",
    instructions="You write files when asked, with the write_file tool.",
    tools=[write_file],
    model=Model(model=model_id, openai_client=client),
)


async def main():
    if stream == "stream":
        result = Runner.run_streamed(agent, "create hello.txt containing hi")
        async for _ in result.stream_events():
            pass
    else:
        result = await Runner.run(agent, "create hello.txt containing hi")
    print(result.final_output)


asyncio.run(main())
'''


def install() -> Path:
    with _locked(CACHE.parent / ".lock"):
        stamp = CACHE / ".installed"
        if not stamp.exists():
            command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
            command += ["--target", str(CACHE), "--upgrade", f"{PACKAGE[0]}=={PACKAGE[1]}"]
            try:
                done = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT)
            except subprocess.TimeoutExpired:
                unavailable(f"pip could not install {PACKAGE} in {PIP_TIMEOUT} s")
            if done.returncode != 0:
                unavailable(f"pip could not install {'=='.join(PACKAGE)}:\n{done.stderr[-2000:]}")
            stamp.write_text("=".join(PACKAGE))
    return CACHE


def command(site: Path, base_url: str, key: str, model: str, api: str, stream: bool) -> tuple[list[str], dict]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(site),
        "HOME": os.environ.get("HOME", "/tmp"),
        "OPENAI_AGENTS_DISABLE_TRACING": "1",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    args = [sys.executable, "-c", SCRIPT, f"{base_url}/v1", key, model, api, "stream" if stream else "whole"]
    return args, env


__all__ = ["CI", "PACKAGE", "command", "install"]
