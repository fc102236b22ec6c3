"""The package's module imports form no circle, and the trigger imports its settings at module level."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "plugins" / "precompiled_drivers"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> dict[str, bool]:
    """The package modules ``path`` imports -> whether the import is inside a function (lazy)."""
    tree = ast.parse(path.read_text())
    found: dict[str, bool] = {}
    lazy_nodes = {
        id(node)
        for func in ast.walk(tree)
        if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef)
        for node in ast.walk(func)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("precompiled_drivers"):
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module or ""]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names if alias.name.startswith("precompiled_drivers")]
        else:
            continue
        for name in names:
            if name in MODULES:
                found[name] = found.get(name, True) and id(node) in lazy_nodes
    return found


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def test_no_import_circle_even_through_lazy_imports() -> None:
    graph = {name: set(imports(path)) - {name} for name, path in MODULES.items()}
    # Packages import nothing that imports them back; a module's package __init__ is not an edge.
    graph = {name: {dep for dep in deps if not name.startswith(dep + ".")} for name, deps in graph.items()}
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        assert name not in visiting, " -> ".join([*visiting[visiting.index(name) :], name])
        if name in done:
            return
        visiting.append(name)
        for dep in sorted(graph[name]):
            visit(dep)
        visiting.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)


def test_the_trigger_imports_its_settings_at_module_level() -> None:
    found = imports(MODULES["precompiled_drivers.releases.trigger"])
    assert found.get("precompiled_drivers.releases.variables") is False, found
    assert not any(found.values()), f"lazy package imports in the trigger: {found}"
