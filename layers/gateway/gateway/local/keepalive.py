"""moto's WSGI app behind uvicorn, so the emulator keeps connections alive as DynamoDB does.

werkzeug's development server, which moto's own server runs on, closes every connection after one
answer. A client of the emulator then opens a TCP connection per call, which DynamoDB's kept-alive
HTTPS connections do not, and which the benchmark would count as the gateway's CPU. uvicorn keeps
them; this adapter hands each request to the WSGI app, one at a time (the lock: moto's backend is
not thread-safe), in a worker thread.
"""

from __future__ import annotations

import asyncio
import io
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any

Wsgi = Callable[[dict[str, Any], Callable[..., Any]], Any]
DROPPED = {"content-length", "connection", "transfer-encoding", "keep-alive"}  # uvicorn sets its own


def asgi(wsgi_app: Wsgi, lock: threading.Lock) -> Callable[..., Any]:
    async def app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        server, port = scope.get("server") or ("127.0.0.1", 80)
        environ: dict[str, Any] = {
            "REQUEST_METHOD": scope["method"],
            "SCRIPT_NAME": "",
            "PATH_INFO": scope["path"],
            "QUERY_STRING": scope["query_string"].decode("latin-1"),
            "SERVER_NAME": server,
            "SERVER_PORT": str(port),
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": (scope.get("client") or ("127.0.0.1", 0))[0],
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(bytes(body)),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for raw_name, raw_value in scope["headers"]:
            name, value = raw_name.decode("latin-1").upper().replace("-", "_"), raw_value.decode("latin-1")
            if name == "CONTENT_TYPE":
                environ[name] = value
            elif name != "CONTENT_LENGTH":
                key = f"HTTP_{name}"
                environ[key] = f"{environ[key]},{value}" if key in environ else value
        started: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            started.update(status=int(status.split(" ", 1)[0]), headers=headers)

        def call() -> bytes:
            with lock:
                result = wsgi_app(environ, start_response)
                try:
                    return b"".join(result)
                finally:
                    if hasattr(result, "close"):
                        result.close()

        content = await asyncio.to_thread(call)
        headers = [(k.lower().encode(), v.encode()) for k, v in started["headers"] if k.lower() not in DROPPED]
        headers.append((b"content-length", str(len(content)).encode()))
        await send({"type": "http.response.start", "status": started["status"], "headers": headers})
        await send({"type": "http.response.body", "body": content})

    return app


class KeepAliveServer:
    """A WSGI app on 127.0.0.1:`port` (0: a free one) under uvicorn, in a daemon thread."""

    def __init__(self, wsgi_app: Wsgi, port: int, lock: threading.Lock) -> None:
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Inherited by the accepted connections, which uvicorn leaves as they are when handed a socket: without
        # it, an answer's body waits ~40 ms behind its headers for the client's delayed ACK.
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.bind(("127.0.0.1", port))
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(
            asgi(wsgi_app, lock),
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=False,
            timeout_keep_alive=60,
            timeout_graceful_shutdown=1,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, name="moto-dynamodb", daemon=True
        )
        self.thread.start()
        while not self.server.started and self.thread.is_alive():
            threading.Event().wait(0.01)

    def shutdown(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)
        self.sock.close()
