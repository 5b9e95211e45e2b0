"""The package's layer rule, read from the source: each layer imports only the layers below it,
no module imports another's private name, no import cycle, and ptibench's own modules are
imported at the top of a module (CONTRIBUTING.md, "Layers")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "ptibench"

FOUNDATION = {
    "errors",
    "io",
    "provenance",
    "spec",
    "grids",
    "case_options",
    "assets",
    "concept",
    "edit_prompts",
}
ALLOWED = {
    "foundation": {"foundation"},
    "world": {"foundation", "world"},
    "models": {"foundation", "world", "models"},
    "training": {"foundation", "models", "training"},
    "evaluation": {"foundation", "world", "models", "evaluation"},
    "run": {"foundation", "world", "models", "training", "evaluation", "run"},
    "results": {"foundation", "results"},
    "studies": {"foundation", "world", "models", "evaluation", "run", "results", "studies"},
    "harness": {
        "foundation",
        "world",
        "models",
        "training",
        "evaluation",
        "run",
        "results",
        "studies",
        "harness",
    },
    # the installed lr-grid cases (pytest --pyargs ptibench.benchmark): test code, on top
    "benchmark": {
        "foundation",
        "world",
        "models",
        "training",
        "evaluation",
        "run",
        "results",
        "studies",
        "harness",
        "benchmark",
    },
}
DEPRECATED_ALIASES = {"ptibench.runner", "ptibench.methods"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "foundation"
    if len(parts) == 2 and parts[1] in FOUNDATION:
        return "foundation"
    return parts[1]


def own_imports(path: Path) -> list[tuple[str, str, bool]]:
    """(imported module, imported name or '', at module top?) for every ptibench import."""
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ptibench"):
            for alias in node.names:
                found.append((node.module, alias.name, id(node) in top))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("ptibench"):
                    found.append((alias.name, "", id(node) in top))
    return found


FIXTURES = PACKAGE / "fixtures"
"""Data the package ships (the world folder carries its UNet's code as a diffusers component)."""
MODULES = {
    module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if not p.is_relative_to(FIXTURES)
}
ALL_MODULES = set(MODULES)


def target_module(module: str, name: str) -> str:
    """`from a.b import c` names module a.b.c when that is a module, else module a.b."""
    return f"{module}.{name}" if f"{module}.{name}" in ALL_MODULES else module


def test_the_layers_are_the_ones_documented():
    layers = {layer(m) for m in MODULES if m not in DEPRECATED_ALIASES}
    assert layers == set(ALLOWED)


@pytest.mark.parametrize(
    "module", sorted(m for m in MODULES if m not in DEPRECATED_ALIASES and m != "ptibench")
)
def test_a_module_imports_only_its_own_layer_and_those_below(module):
    mine = layer(module)
    wrong = [
        f"{target_module(imported, name)} ({layer(target_module(imported, name))})"
        for imported, name, _ in own_imports(MODULES[module])
        if layer(target_module(imported, name)) not in ALLOWED[mine]
        or target_module(imported, name) in DEPRECATED_ALIASES
    ]
    assert not wrong, f"{module} ({mine}) imports upward or an alias: {wrong}"


def test_no_private_name_is_imported_across_modules():
    private = [
        f"{module}: {imported}.{name}"
        for module, path in MODULES.items()
        for imported, name, _ in own_imports(path)
        if name.startswith("_") and not name.startswith("__")
    ]
    assert not private


def test_own_modules_are_imported_at_module_top():
    local = [
        f"{module}: {imported}"
        for module, path in MODULES.items()
        for imported, _, at_top in own_imports(path)
        if not at_top
    ]
    assert not local


def test_there_is_no_import_cycle():
    graph = {
        module: {
            target_module(imported, name)
            for imported, name, at_top in own_imports(path)
            if at_top and target_module(imported, name) in ALL_MODULES
        }
        for module, path in MODULES.items()
    }
    state: dict[str, int] = {}

    def visit(module: str, trail: list[str]) -> list[str] | None:
        state[module] = 1
        for nxt in sorted(graph[module]):
            if state.get(nxt) == 1 and not module.startswith(nxt + "."):
                return [*trail, module, nxt]
            if nxt not in state:
                cycle = visit(nxt, [*trail, module])
                if cycle:
                    return cycle
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module, [])
            assert cycle is None, " -> ".join(cycle)


def test_the_layer_test_sees_an_upward_import():
    """The rule can fail: a results module importing the run layer is caught."""
    assert layer("ptibench.run.runner") not in ALLOWED[layer("ptibench.results.report")]
    assert layer(target_module("ptibench.training", "methods")) == "training"
