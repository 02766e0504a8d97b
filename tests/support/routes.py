"""The routes an app serves, as (method, path) pairs: FastAPI keeps each included router behind one entry."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from starlette.routing import Route


def _flat(routes: list[Any]) -> Iterator[Any]:
    for route in routes:
        inner = getattr(route, "original_router", None)
        yield from _flat(inner.routes) if inner is not None else (route,)


def served(app: Any) -> set[tuple[str, str]]:
    """Every (method, path) the app answers, in API Gateway's spelling: `{x+}` for a path parameter."""
    found = set()
    for route in _flat(app.router.routes):
        if isinstance(route, Route):
            path = re.sub(r"\{(\w+):path\}", r"{\1+}", route.path)
            path = path.rstrip("/") or "/"  # /playground/ is /playground's trailing-slash twin
            found |= {(method, path) for method in route.methods or () if method != "HEAD"}
    assert found, "the app serves no routes: has FastAPI changed how it keeps included routers?"
    return found
