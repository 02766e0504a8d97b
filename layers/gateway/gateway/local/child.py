"""Child processes of the local tools (moto's server under `gateway-local`, the benchmark's servers):
one way to start them announcing readiness, to tie them to their parent, and to stop them.

A child prints one JSON line on stdout when it is ready; the parent reads it with a deadline. A
child also ends when its parent dies (SIGKILL included), so an interrupted `make serve` or
benchmark leaves no orphan holding a port.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from typing import Any

PR_SET_PDEATHSIG = 1  # linux/prctl.h
PARENT_POLL_SECONDS = 1.0


def stop(process: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """Ask a child process to end, and make sure it has: SIGTERM, then SIGKILL after `timeout`."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def read_ready(process: subprocess.Popen[bytes], timeout: float, name: str) -> dict[str, Any]:
    """The child's first stdout line (JSON), read from its pipe without blocking past `timeout`."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    line = b""
    deadline = time.monotonic() + timeout
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        chunk = os.read(fd, 4096) if left > 0 and select.select([fd], [], [], min(left, 0.2))[0] else None
        if chunk == b"" or left <= 0:  # end of output (it exited) or out of time
            stop(process, 5)
            raise RuntimeError(f"{name} did not start (exit status {process.returncode})")
        line += chunk or b""
    return json.loads(line.split(b"\n", 1)[0])


def die_with_parent(parent: int) -> None:
    """End this process (SIGTERM to itself, so its handlers run) when `parent` is gone.

    Linux's PR_SET_PDEATHSIG does it at once; a thread watching the parent id covers other systems
    and the moment before prctl took effect (a parent already gone means we were orphaned).
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_SECONDS)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def wait_for_signal() -> None:
    """Block until SIGTERM or SIGINT.

    The handler only writes a byte to a pipe, which takes no lock: signals arriving close together
    (the parent's death, the parent-watch thread's own SIGTERM, the parent's stop) re-enter it
    harmlessly. A handler that set a threading.Event deadlocked there, on the lock its own
    interrupted call held, and the emulator outlived its gateway.
    """
    read, write = os.pipe()
    os.set_blocking(write, False)

    def handler(*_: Any) -> None:
        with contextlib.suppress(OSError):  # a full pipe already says it
            os.write(write, b"x")

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    os.read(read, 1)
