"""The gateway as `make serve` runs it: `gateway-local` in a child process, with moto's DynamoDB in
its own child, an extra catalog (GATEWAY_CATALOG_EXTRA) whose one provider is the scripted
upstream, and keys issued with `gateway-admin` against that emulator.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.processes import stop, wait_answering
from tests.support.servers import free_port

START_TIMEOUT = 90
ADMIN_TIMEOUT = 60
PROVIDER = "agents-upstream"
BASE_URL_ENV = "AGENTS_UPSTREAM_BASE_URL"
# A Sonnet-sized model: Claude Sonnet's prices, context and output limit.
SONNET = {
    "context_length": 200000,
    "max_output_tokens": 64000,
    "pricing": {"input": "3", "output": "15", "cache_read": "0.30", "cache_write": "3.75", "cache_write_1h": "6"},
}
MODELS = {
    "agent-sonnet": "Claude Code's model: an id it does not know, the size of Sonnet",
    "gpt-5.5": "an id Codex ships metadata for (custom apply_patch, tool_search)",
    "agent-model": "an id Codex does not know (fallback metadata: exec_command)",
    "gpt-6.2-sol": "Codex's default model: code mode (additional_tools, custom exec)",
}
# Each agent runs on a new key of the shipped free plan, as a new user has it: no credit, ten free requests
# a month, each covering up to the plan's free_request_cost (an agent's turn on a Sonnet-priced model fits).


def catalog() -> dict[str, Any]:
    provider = {"name": "Scripted agent upstream", "protocol": "openai", "base_url_env": BASE_URL_ENV}
    provider["key_required"] = False
    models = [
        {
            "id": model_id,
            "owned_by": "agents-lab",
            "created": 1767225600,
            "display_name": description,
            "offerings": [{"provider": PROVIDER, "model": f"upstream-{model_id}"}],
            "supports_tools": True,
            **SONNET,
        }
        for model_id, description in MODELS.items()
    ]
    return {"providers": {PROVIDER: provider}, "models": models}


def _script(name: str) -> str:
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} not found (is the package installed: `make serve` does it)")
    return found


@dataclass
class LocalGateway:
    process: subprocess.Popen[bytes]
    url: str  # http://127.0.0.1:PORT (the API under /v1)
    dynamodb: str  # the emulator's endpoint
    log: Path
    env: dict[str, str]

    def admin(self, *args: str) -> dict[str, Any]:
        command = [_script("gateway-admin"), "--endpoint-url", self.dynamodb, "--json", *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=ADMIN_TIMEOUT, env=self.env)
        if done.returncode != 0:
            raise RuntimeError(f"gateway-admin {' '.join(args)} failed:\n{done.stderr[-2000:]}")
        return json.loads(done.stdout)

    def free_key(self, owner: str) -> tuple[str, str]:
        """A new key on the free plan, as it is issued: (key, key id)."""
        made = self.admin("create-key", "--owner", owner, "--name", "coding agent", "--plan", "free")
        return made["key"], made["key_id"]

    def stop(self) -> None:
        stop(self.process, timeout=10)


def start(upstream_url: str, workdir: Path) -> LocalGateway:
    workdir.mkdir(parents=True, exist_ok=True)
    catalog_path = workdir / "agents-catalog.json"
    catalog_path.write_text(json.dumps(catalog(), indent=1))
    port = free_port()
    env = {
        **os.environ,
        "GATEWAY_CATALOG_EXTRA": str(catalog_path),
        BASE_URL_ENV: f"{upstream_url}/v1",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "PYTHONUNBUFFERED": "1",
    }
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        env.pop(name, None)
    log = workdir / "gateway-local.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [_script("gateway-local"), "--port", str(port), "--dynamodb-port", "0"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=workdir,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_answering(f"{url}/v1/models", process, time.monotonic() + START_TIMEOUT, log)
        found = re.search(r"DynamoDB \(moto\) at (http://\S+?),", log.read_text(errors="replace"))
        if not found:  # printed before the server starts answering
            raise RuntimeError(f"gateway-local named no emulator:\n{log.read_text(errors='replace')[-3000:]}")
        dynamodb = found.group(1)
    except BaseException:
        stop(process, timeout=5)
        raise
    return LocalGateway(process=process, url=url, dynamodb=dynamodb, log=log, env=env)
