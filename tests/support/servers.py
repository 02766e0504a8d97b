"""Real servers on 127.0.0.1 in this process: an ASGI app under uvicorn in a daemon thread (ServerThread),
a fake provider served by one (LoopbackApp), and free ports."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Self

import uvicorn
from starlette.applications import Starlette

from gateway.local.dynamodb import free_port

__all__ = ["LoopbackApp", "ServerThread", "free_port"]  # free_port: a port nothing listens on (closed again)


class ServerThread:
    """A real uvicorn server for an ASGI app on a free 127.0.0.1 port, running in a daemon thread."""

    def __init__(self, app: Callable[..., Any], name: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit this; without it every response waits ~40 ms for a delayed ACK
        # (uvicorn sets no TCP_NODELAY on the connections of a socket it was handed).
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            loop="asyncio",
            http="h11",
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, name=name)
        self.thread.daemon = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{self.thread.name} did not start within {timeout} seconds")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        if self.thread.is_alive():
            self.server.force_exit = True
            self.thread.join(timeout)
        self.sock.close()


class LoopbackApp:
    """A fake provider's app served by a ServerThread on 127.0.0.1: set `app` and `name`, then `start()`."""

    app: Starlette
    name = "fake-provider"
    server: ServerThread | None = None

    def start(self) -> Self:
        self.server = ServerThread(self.app, name=self.name).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    @property
    def url(self) -> str:
        assert self.server is not None, f"{self.name} is not started"
        return self.server.url
