"""The package's layers import only downward, and what is not shipped to Lambda is imported by nothing that is.

Each module of `gateway/` sits in a layer (its top-level package, or itself for a top-level module);
a module may import its own layer and the layers below it. An upward import (the one that ran from
providers/registry.py to routing/catalog.py) ties a lower layer to everything above it, so it fails here.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "layers" / "gateway" / "gateway"

# Lowest first. Top-level modules hold data and small mechanisms every layer may use; `local` and
# `admin` are development and operator tools, left out of the Lambda layer (layers/gateway/Makefile).
LAYERS = (
    ("caches",),
    ("aws", "config", "errors", "tokens"),
    ("telemetry", "catalog", "toolkit"),
    ("storage",),
    ("stats",),
    ("accounts",),
    ("providers",),
    ("routing",),
    ("chat",),
    ("protocols",),
    ("api",),
    ("local",),
    ("admin",),
)
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
NOT_SHIPPED = ("local", "admin")


def layer_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def imported_layers(source: str) -> Iterator[tuple[int, str]]:
    """(line, layer) for every `gateway.*` import in the module, at any depth (lazy imports count)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module] if node.module != "gateway" else [f"gateway.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        else:
            continue
        for module in modules:
            parts = module.split(".")
            if parts[0] == "gateway" and len(parts) > 1:
                yield node.lineno, parts[1]


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_layer_is_ranked() -> None:
    on_disk = {layer_of(p) for p in MODULES} - {"__init__"}
    assert on_disk == set(RANK), "add the new package or module to LAYERS in its place"


def upward_imports(path: Path, source: str) -> list[str]:
    own = layer_of(path)
    return [
        f"{path.relative_to(PACKAGE)}:{line} imports gateway.{layer} (a higher layer than {own})"
        for line, layer in imported_layers(source)
        if own != "__init__" and layer != own and RANK[layer] >= RANK[own]
    ]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_run_downward(path: Path) -> None:
    upward = upward_imports(path, path.read_text())
    assert not upward, "\n".join(upward)


def test_an_upward_import_is_caught() -> None:
    """The check can fail: the import this test exists for, lazy or not, is reported; a downward one is not."""
    registry = PACKAGE / "providers" / "registry.py"
    source = "from gateway.catalog import Provider\n\ndef f():\n    from gateway.routing import health\n"
    assert upward_imports(registry, source) == [
        "providers/registry.py:4 imports gateway.routing (a higher layer than providers)"
    ]


def test_shipped_modules_do_not_import_the_tools() -> None:
    shipped = [p for p in MODULES if layer_of(p) not in NOT_SHIPPED]
    offenders = [
        f"{p.relative_to(PACKAGE)}:{line}"
        for p in shipped
        for line, layer in imported_layers(p.read_text())
        if layer in NOT_SHIPPED
    ]
    assert not offenders, offenders
