"""Every per-process cache of the gateway, registered where it is defined, so one call forgets them all.

A warm Lambda instance keeps what it derived once (settings, the catalog, AWS and HTTP clients,
key records, provider health) for as long as it lives. Whatever must start afresh (a test that
changes the environment, an instance restored from a snapshot whose clients and clocks are
stale) calls `reset_caches()`, and nothing needs to know where each cache lives:

    _adapters: dict[str, Adapter] = {}
    caches.register(_adapters.clear, f"{__name__}._adapters")

    @caches.resettable
    @lru_cache(maxsize=1)
    def settings() -> Settings: ...

tests/unit/test_caches.py finds every `lru_cache` and every module-level cache container in the
package and fails on one that is not registered here. Every Lambda imports this module at
init, so it needs nothing beyond the standard library.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar


class _Cached(Protocol):
    __module__: str
    __qualname__: str

    def cache_clear(self) -> None: ...


F = TypeVar("F", bound=_Cached)

_clears: dict[str, Callable[[], None]] = {}  # the registry itself: name -> how to empty that cache


def register(clear: Callable[[], None], name: str) -> None:
    """Register how to empty one cache, under the name of what it is (`module.attribute`).

    Registering a name again replaces the earlier entry, so a module loaded twice registers once.
    """
    _clears[name] = clear


def resettable(function: F) -> F:
    """Register an `lru_cache`d function (stacked above `@lru_cache`), named by its module and name."""
    register(function.cache_clear, f"{function.__module__}.{function.__qualname__}")
    return function


def registered() -> list[str]:
    """The names of every registered cache, sorted."""
    return sorted(_clears)


def reset_caches() -> None:
    """Empty every registered cache: whatever is asked for next is built afresh."""
    for clear in list(_clears.values()):
        clear()
