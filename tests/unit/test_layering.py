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

PACKAGE = Path(__file__).resolve().parents[2] / "layers" / "gateway" / "gateway"

# Lowest first. Top-level modules hold data and small mechanisms every layer may use; `local` and
# `admin` are development and operator tools, left out of the Lambda layer (layers/gateway/Makefile).
LAYERS = (
    ("caches",),
    ("aws", "config", "errors", "tokens"),
    ("telemetry", "catalog", "fields", "upstream"),
    ("storage",),
    ("stats",),
    ("accounts",),
    ("wire",),
    ("providers",),
    ("routing",),
    ("chat",),
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


# --- the house by protocol -----------------------------------------------------------------------

MAX_LINES = 500


def package_of(path: Path) -> str:
    return ".".join(("gateway", *path.relative_to(PACKAGE).parent.parts))


def private_imports(path: Path, source: str) -> list[str]:
    """`from gateway.x import _name`, or `module._name` on a module imported from another package."""
    own = package_of(path)
    found = []
    modules: dict[str, str] = {}  # local name -> the gateway module it is
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("gateway"):
            for alias in node.names:
                target = f"{node.module}.{alias.name}"
                if (PACKAGE.parent / Path(*target.split("."))).with_suffix(".py").exists():
                    modules[alias.asname or alias.name] = target  # a module, imported by name
                elif alias.name.startswith("_") and node.module != own and not node.module.startswith(own + "."):
                    found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} imports {node.module}.{alias.name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.attr.startswith("_"):
            module = modules.get(node.value.id)
            if module and module.rpartition(".")[0] != own and not node.attr.startswith("__"):
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} uses {module}.{node.attr}")
    return found


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_reaches_into_another_package_s_private_names(path: Path) -> None:
    found = private_imports(path, path.read_text())
    assert not found, "\n".join(found)


def test_a_private_import_from_another_package_is_caught() -> None:
    path = PACKAGE / "wire" / "responses" / "request.py"
    source = "from gateway.wire.chat.request import _get\nfrom gateway.stats import counters\ncounters._totals()\n"
    assert private_imports(path, source) == [
        "wire/responses/request.py:1 imports gateway.wire.chat.request._get",
        "wire/responses/request.py:3 uses gateway.stats.counters._totals",
    ]
    own = "from gateway.wire.responses.answer import _status\n"  # within its own package: fine
    assert private_imports(path, own) == []


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_is_over_500_lines(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(PACKAGE)} has {lines} lines: split it by what it holds"


WIRE = PACKAGE / "wire"
# Words only one wire format uses: each must be written in that format's folder and nowhere else.
SIGNATURES = {
    "anthropic": ("content_block_delta", "overloaded_error", "input_json_delta", "tool_result"),
    "responses": ("response.output_text.delta", "function_call_output", "response.completed"),
    "converse": ("contentBlockDelta", "toolUseId", "inferenceConfig"),
}


@pytest.mark.parametrize("wire", sorted(SIGNATURES))
def test_each_wire_format_lives_in_one_folder(wire: str) -> None:
    assert (WIRE / wire).is_dir()
    outside = [
        f"{p.relative_to(PACKAGE)} writes {word!r}"
        for p in MODULES
        if WIRE / wire not in p.parents
        for word in SIGNATURES[wire]
        if f'"{word}"' in p.read_text()
    ]
    assert not outside, "\n".join(outside)


def test_one_stream_driver_renders_every_protocol() -> None:
    """Only wire/stream.py drives a stream; each protocol's stream module supplies a Renderer for it."""
    drivers = [p.relative_to(PACKAGE) for p in MODULES if "aclosing(" in p.read_text()]
    assert drivers == [Path("wire/stream.py")]
    for wire in ("chat", "anthropic", "responses"):
        tree = ast.parse((WIRE / wire / "stream.py").read_text())
        (renderer,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Renderer"]
        methods = {n.name for n in renderer.body if isinstance(n, ast.FunctionDef)}
        assert {"start", "delta", "finish", "fail"} <= methods, wire
