"""The registry of per-process caches (gateway/caches.py): every cache in the package is on it, and
`reset_caches()` empties each one.

Caches are found by reading the source: every `lru_cache` (or `functools.cache`) and every
module-level container created empty (`{}`, `set()`, `WeakKeyDictionary()`, ...) is one, and must
be registered under `module.name`, so a cache added later cannot be forgotten by the tests'
reset or by a restored instance.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway import caches

PACKAGE = Path(caches.__file__).resolve().parent
CACHING_DECORATORS = {"lru_cache", "cache"}
EMPTY_CONTAINERS = {
    "dict",
    "set",
    "list",
    "defaultdict",
    "OrderedDict",
    "Counter",
    "WeakKeyDictionary",
    "WeakValueDictionary",
    "WeakSet",
}
# Module-level containers that are not caches, and why.
NOT_CACHES = {
    "gateway.caches._clears": "the registry itself",
    "gateway.api.snapstart._restored": "callbacks for restored copies, registered once at init",
    "gateway.accounts.settlement._pending": "writes the store refused, kept until written: clearing one loses a bill",
    "gateway.chat.call._billing": "bills being written: held so no task is collected before it lands",
}


def _called_name(node: ast.expr) -> str | None:
    """`name` for `name`, `module.name`, `name(...)` and `module.name(...)`."""
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return None


def _empty_container(value: ast.expr | None) -> bool:
    if isinstance(value, ast.Dict | ast.List | ast.Set):
        return not getattr(value, "keys", None) and not getattr(value, "elts", None)
    return isinstance(value, ast.Call) and not value.args and _called_name(value) in EMPTY_CONTAINERS


def _functions(body: list[ast.stmt], prefix: str) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Every function of a module, methods included, with its qualified name."""
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield prefix + node.name, node
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node.body, f"{prefix}{node.name}.")


def found_caches() -> dict[str, str]:
    """Every cache in the package's source: `module.name` -> where it is."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        tree = ast.parse(path.read_text(), str(path))
        for qualname, function in _functions(tree.body, ""):
            if any(_called_name(d) in CACHING_DECORATORS for d in function.decorator_list):
                found[f"{module}.{qualname}"] = f"{path}:{function.lineno}"
        for node in tree.body:
            if isinstance(node, ast.Assign):
                targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                targets = [node.target.id]
            else:
                continue
            if _empty_container(node.value):
                found.update({f"{module}.{t}": f"{path}:{node.lineno}" for t in targets})
    return {name: where for name, where in found.items() if name not in NOT_CACHES}


def resolve(name: str) -> Any:
    """The object a registered name names: the longest importable module, then attributes."""
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            obj = getattr(obj, attribute)
        return obj
    raise LookupError(name)


@pytest.fixture
def every_cache() -> Iterator[list[str]]:
    """Every module with a cache imported (so each has registered), and every cache emptied after."""
    found = found_caches()
    for name in found:
        resolve(name)
    yield sorted(found)
    caches.reset_caches()


def test_the_source_has_the_caches_it_is_known_to_have() -> None:
    """The search finds caches at all (a broken search would pass the test below with nothing)."""
    found = found_caches()
    assert {"gateway.config.settings", "gateway.accounts.keys._cache", "gateway.providers.http._clients"} <= set(found)


def test_every_cache_in_the_package_is_registered(every_cache: list[str]) -> None:
    missing = {name: found_caches()[name] for name in every_cache if name not in caches.registered()}
    assert not missing, f"register these with gateway.caches (register or @resettable): {missing}"


def test_every_registered_name_names_what_it_clears(every_cache: list[str]) -> None:
    for name in caches.registered():
        assert resolve(name) is not None, name


def _fill_powertools_parameters() -> Callable[[], bool]:
    """A value in Powertools Parameters' cache (the secret and the key names are read through it)."""
    from aws_lambda_powertools.utilities.parameters import base

    base.DEFAULT_PROVIDERS["ssm"] = object()  # type: ignore[assignment]
    return lambda: not base.DEFAULT_PROVIDERS


# Caches that are not an attribute of the gateway (a library's), by the clear function registered for each.
def _fill_signing_keys() -> Callable[[], bool]:
    from gateway.storage import signing

    signing._signing_key("secret", "20261207", "us-east-1", "dynamodb")
    return lambda: signing._signing_key.cache_info().currsize == 0


FILLERS = {
    "gateway.providers.credentials.forget": _fill_powertools_parameters,
    "gateway.storage.signing._signing_key": _fill_signing_keys,
}


class Sentinel:
    """A key any cache accepts: hashable, and weakly referable for the Weak* containers."""


def test_reset_caches_empties_every_cache(every_cache: list[str]) -> None:
    keep = Sentinel()
    emptied: dict[str, Callable[[], bool]] = {}
    for name in caches.registered():
        obj = resolve(name)
        if name in FILLERS:
            emptied[name] = FILLERS[name]()
        elif hasattr(obj, "cache_info"):
            obj()  # every cached function of the gateway takes no arguments
            assert obj.cache_info().currsize == 1, name
            emptied[name] = lambda obj=obj: obj.cache_info().currsize == 0
        elif hasattr(obj, "add"):
            obj.add(keep)
            emptied[name] = lambda obj=obj: len(obj) == 0
        else:
            obj[keep] = keep
            assert len(obj) == 1 or keep in obj, name
            emptied[name] = lambda obj=obj: len(obj) == 0
    assert set(every_cache) <= set(emptied)

    caches.reset_caches()
    assert [name for name, empty in emptied.items() if not empty()] == []


def test_importing_the_registry_loads_the_standard_library_only() -> None:
    """Every Lambda imports it at init: it may not pull a third-party package in."""
    code = (
        "import sys; before = set(sys.modules); import gateway.caches; "
        "print('\\n'.join(sorted(set(sys.modules) - before)))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    outside = [m for m in loaded if m.split(".")[0] not in sys.stdlib_module_names and m.split(".")[0] != "gateway"]
    assert outside == [] and set(m for m in loaded if m.startswith("gateway")) == {"gateway", "gateway.caches"}
