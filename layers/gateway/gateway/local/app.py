"""Every route in one app, for the local server and the end-to-end tests."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.api.app import create_app, routers
from gateway.api.middleware import StagePrefix
from gateway.telemetry import logger as log


class DrainTallies:
    """Count the stream's new tallies into the usage counters before every read (a GET), so what it shows is
    current: locally no TallyFunction runs (gateway/local/streams.py)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            import anyio.to_thread

            from gateway.local import streams

            try:
                await anyio.to_thread.run_sync(streams.drain)
            except Exception:  # a store that is away: the route itself answers that, in its own shape
                log.warning("tallies not counted", exc_info=True)
        await self.app(scope, receive, send)


def local_app() -> FastAPI:
    app = create_app(*routers())
    app.add_middleware(StagePrefix)
    app.add_middleware(DrainTallies)
    return app
