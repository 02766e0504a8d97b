"""The DynamoDB emulator never outlives its gateway, and never blocks the next one (issue 23, item 5).

Its SIGTERM handler once set a threading.Event: signals arriving together (the parent's death, the
parent-watch thread's own SIGTERM, the parent's stop) re-entered it on the event's lock, and the
emulator hung on, holding port 8001, so the next `make serve` failed.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.processes import stop
from tests.support.servers import free_port


def spawn() -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "gateway.local.dynamodb", "--port", str(free_port()), "--parent", str(os.getpid())]
    return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, start_new_session=True)


def ended(process: subprocess.Popen[bytes], within: float = 10.0) -> bool:
    try:
        process.wait(within)
    except subprocess.TimeoutExpired:
        stop(process, 5)
        return False
    return True


@pytest.mark.parametrize("after", [0.0, 0.3, 1.0, "ready"], ids=["at-once", "importing", "starting", "serving"])
def test_a_burst_of_sigterms_at_any_point_of_its_life_ends_it(after: float | str) -> None:
    from gateway.local.child import read_ready

    process = spawn()
    if after == "ready":
        read_ready(process, 60, "emulator")
    else:
        time.sleep(float(after))
    for _ in range(6):  # several signals close together, as when a gateway dies
        os.kill(process.pid, signal.SIGTERM)
        time.sleep(0.001)
    assert ended(process), "the emulator survived a burst of SIGTERMs"


def test_a_busy_port_gives_the_emulator_another_and_admin_finds_it(tmp_path: Path) -> None:
    with __import__("socket").socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        env = {**os.environ, "GATEWAY_LOCAL_STATE": str(tmp_path / "state.json")}
        port = free_port()
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "gateway-local"), "--port", str(port), "--dynamodb-port", str(busy)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        try:
            seen, deadline = [], time.monotonic() + 60
            assert server.stdout is not None
            while not any("DynamoDB (moto) at" in line for line in seen) and time.monotonic() < deadline:
                seen.append(server.stdout.readline())
            text = "".join(seen)
            assert f"Port {busy} is in use" in text, text
            endpoint = re.search(r"DynamoDB \(moto\) at (\S+)", text).group(1)  # type: ignore[union-attr]
            assert not endpoint.endswith(f":{busy}")
            admin = subprocess.run(
                [str(Path(sys.executable).parent / "gateway-admin"), "--local", "--json", "list-keys"],
                capture_output=True,
                text=True,
                env=env,
                timeout=60,
            )
            assert admin.returncode == 0 and "development key" in admin.stdout, admin.stdout + admin.stderr
        finally:
            stop(server, 10)
        from gateway.local import dynamodb

        os.environ["GATEWAY_LOCAL_STATE"] = str(tmp_path / "state.json")
        try:
            assert dynamodb.running_endpoint() is None  # a stopped server is not found, whatever file it left
        finally:
            del os.environ["GATEWAY_LOCAL_STATE"]
