"""SnapStart: prime a function before Lambda snapshots it, and renew what each restored copy must own.

With SnapStart, init runs once per published version; Lambda snapshots the initialised memory and
every cold start resumes a copy of it. So init should do all the work a request would otherwise do
first (`prime`: imports, FastAPI's dependency graphs, pydantic and orjson paths, regexes, the
catalog, botocore's parsed service models), and must not leave in the snapshot what copies may not
share (`renew`): connection pools and AWS clients (their credentials and sockets belong to one
environment; their keep-alive clocks stop while a snapshot sleeps), key records, provider health
and settlement state read at snapshot time, and the `random` module's state.

Hooks: the Mangum functions run in Lambda's Python runtime, which calls `snapshot_restore_py`'s
registered hooks (`register_runtime_hooks`). The chat function runs uvicorn behind the Lambda Web
Adapter, whose runtime is the adapter, not Python: the adapter (1.1.0, layer version 30 and later)
POSTs to the app's own paths named by AWS_LWA_SNAPSTART_BEFORE_CHECKPOINT_PATH and
AWS_LWA_SNAPSTART_AFTER_RESTORE_PATH (`hooks_router`), and answers 403 itself to anyone else asking.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
from collections.abc import Awaitable, Callable, Iterable

from fastapi import APIRouter, FastAPI
from starlette.responses import Response

from gateway.caches import reset_caches

BEFORE_PATH = "AWS_LWA_SNAPSTART_BEFORE_CHECKPOINT_PATH"
AFTER_PATH = "AWS_LWA_SNAPSTART_AFTER_RESTORE_PATH"

Request = tuple[str, str, bytes | None]  # method, path, JSON body


_restored: list[Callable[[], None]] = []  # what each restored copy runs besides renewing (on_restore)


def on_restore(callback: Callable[[], None]) -> None:
    """Run `callback` in every restored copy, after `renew` (the chat function counts its cold start so)."""
    _restored.append(callback)


def renew() -> None:
    """After a restore: forget every registered cache and reseed `random`.

    Every cache goes, not only the per-environment ones (pools, clients and their credentials, key
    records, provider health): settings and the catalog are rebuilt from the same files in ~2 ms,
    and one rule is easier to trust than a list of exceptions.
    """
    reset_caches()
    random.seed()  # seeded from os.urandom, which differs in every restored copy
    for callback in _restored:
        callback()


def before_snapshot() -> None:
    """What init built is collected once and frozen, so no copy spends a collection on it.

    The clients `renew` drops in each copy stay frozen with it (a few hundred KB, once per
    environment): cheaper than a full collection on every cold start.
    """
    gc.collect()
    gc.freeze()


def register_runtime_hooks() -> bool:
    """Register with Lambda's Python runtime, where it snapshots this process; elsewhere there is nothing to do."""
    try:
        import snapshot_restore_py as runtime  # in Lambda's Python runtimes; a dev dependency for tests
    except ImportError:  # not Lambda's runtime (local runs), or one without SnapStart
        return False
    if not any(entry[0] is renew for entry in runtime.get_after_restore()):  # once, however many apps
        runtime.register_before_snapshot(before_snapshot)
        runtime.register_after_restore(renew)
    return True


def hooks_router() -> APIRouter:
    """The adapter's two hook routes, at the paths its environment names; none where it names none."""
    router = APIRouter(include_in_schema=False)
    for variable, hook in ((BEFORE_PATH, before_snapshot), (AFTER_PATH, renew)):
        path = os.environ.get(variable)
        if path:
            router.add_api_route(path, _answer(hook), methods=["POST"])
    return router


def _answer(hook: Callable[[], None]) -> Callable[[], Awaitable[Response]]:
    async def run() -> Response:
        hook()
        return Response(status_code=204)

    run.__name__ = f"snapstart_{getattr(hook, '__name__', 'hook')}"
    return run


def snapshotting() -> bool:
    """Whether this init is the one Lambda snapshots (SnapStart): only then is priming worth its time."""
    return os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") == "snap-start"


def prime(app: FastAPI, requests: Iterable[Request]) -> dict[str, int]:
    """Send requests through the app in this process, without a network, and return their statuses.

    Priming requests must need nothing outside the process: public routes, or keyed routes asked
    without a key (they run the middleware, routing, the key dependency and the error shapes).
    """

    import httpx  # only here: the models and stats functions need it for nothing else

    async def run() -> dict[str, int]:
        transport = httpx.ASGITransport(app=app)
        statuses = {}
        async with httpx.AsyncClient(transport=transport, base_url="http://snapstart.invalid") as client:
            for method, path, body in requests:
                headers = {"content-type": "application/json"} if body is not None else {}
                response = await client.request(method, path, content=body, headers=headers)
                statuses[f"{method} {path}"] = response.status_code
        return statuses

    return asyncio.run(run())
