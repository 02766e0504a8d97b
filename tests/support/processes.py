"""Child processes of the tests: a whole gateway in a process of its own, waiting for a child to
listen on its port, and stopping one (gateway.local.child.stop: SIGTERM, then SIGKILL)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from gateway.local.child import stop
from gateway.local.dynamodb import free_port

__all__ = ["gateway_process", "gateway_processes", "stop", "wait_answering", "wait_until_listening"]

SERVE = "import sys, uvicorn; from gateway.local.app import local_app; uvicorn.run(local_app(), host='127.0.0.1', port=int(sys.argv[1]), log_level='warning', access_log=False)"  # noqa: E501


def wait_answering(url: str, process: subprocess.Popen[bytes], deadline: float, log: Path) -> None:
    """Wait until GET `url` answers 200; a RuntimeError with the log's tail if the process ends or time runs out."""
    while True:
        try:
            if httpx.get(url, timeout=2, trust_env=False).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not start answering:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.05)


@contextmanager
def gateway_processes(env: dict[str, str], logs: list[Path]) -> Iterator[list[str]]:
    """Whole gateways, one process each (its own caches, its own event loop), started together;
    yields their /v1 URLs once every one answers, and stops them all together."""
    full_env = {**os.environ, **env, "POWERTOOLS_METRICS_DISABLED": "true"}
    started: list[tuple[subprocess.Popen[bytes], str, Path]] = []
    try:
        for log in logs:
            port = free_port()
            with log.open("wb") as out:
                proc = subprocess.Popen([sys.executable, "-c", SERVE, str(port)], env=full_env, stdout=out, stderr=out)
            started.append((proc, f"http://127.0.0.1:{port}/v1", log))
        deadline = time.monotonic() + 30
        for proc, url, log in started:
            wait_answering(f"{url}/models", proc, deadline, log)
        yield [url for _, url, _ in started]
    finally:
        for proc, _, _ in started:
            proc.terminate()  # all at once; stop() then waits for each, and kills one that lingers
        for proc, _, _ in started:
            stop(proc, timeout=5)


@contextmanager
def gateway_process(env: dict[str, str], log: Path) -> Iterator[str]:
    """A whole gateway in its own process (its own caches, its own event loop); yields its /v1 URL."""
    with gateway_processes(env, [log]) as (url,):
        yield url


def wait_until_listening(process: subprocess.Popen[bytes], port: int, log: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while True:
        assert process.poll() is None, f"exited with {process.returncode}:\n{log.read_text(errors='replace')}"
        assert time.monotonic() < deadline, f"not listening after {seconds} s:\n{log.read_text(errors='replace')}"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
