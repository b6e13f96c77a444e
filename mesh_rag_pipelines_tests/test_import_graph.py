"""The package's import graph has no circles, and the seams hold: the environment is read in one
module, and no code outside the source kinds branches on a contract's source kind."""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Iterator
from pathlib import Path

import mesh_rag_pipelines
from mesh_rag_pipelines.sources import SOURCE_KINDS

PACKAGE = Path(mesh_rag_pipelines.__file__).parent
NAME = "mesh_rag_pipelines"


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        if "migrations" in path.parts:
            continue  # Alembic's revisions are loaded by file, not imported by the package
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def _runs_at_import(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Statements executed when the module is imported: not function bodies, not the
    `if TYPE_CHECKING:` block."""
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from _runs_at_import(node.orelse)
            continue
        yield node
        for field in ("body", "orelse", "finalbody", "handlers"):
            inner = getattr(node, field, None)
            if isinstance(inner, list) and inner and isinstance(inner[0], ast.stmt):
                yield from _runs_at_import(inner)
        for handler in getattr(node, "handlers", []):
            yield from _runs_at_import(handler.body)


def _home(module: str, name: str, modules: dict[str, Path]) -> str:
    """The module `from module import name` really loads: a submodule, or where the object is
    defined (a package may hand out names it loads lazily)."""
    if f"{module}.{name}" in modules:
        return f"{module}.{name}"
    owner = getattr(importlib.import_module(module), name, None)
    defined_in = getattr(owner, "__module__", None)
    return defined_in if defined_in in modules else module


def _import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in _runs_at_import(ast.parse(path.read_text()).body):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(NAME):
                targets = [_home(node.module or "", alias.name, modules) for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names if alias.name.startswith(NAME)]
            graph[name] |= {target for target in targets if target in modules and target != name}
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return circles


def test_no_module_imports_itself_through_others() -> None:
    graph = _import_graph()
    assert len(graph) > 60
    assert "mesh_rag_pipelines.contracts.model" in graph["mesh_rag_pipelines.pipeline"] or any(
        "mesh_rag_pipelines.contracts" in target for target in graph["mesh_rag_pipelines.pipeline"]
    )
    assert _circles(graph) == []


def test_a_circle_is_found_when_there_is_one() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _circles(graph) == [["a", "b", "c"]]


def _code_lines(pattern: str) -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(pattern, line):
                found.append(f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}")
    return found


def test_only_the_settings_module_reads_the_environment() -> None:
    readers = [
        line
        for line in _code_lines(r"os\.environ|os\.getenv|getenv\(")
        if not line.startswith("settings.py:")
    ]
    assert readers == []


def test_only_the_source_kinds_tell_source_kinds_apart() -> None:
    kind_names = "|".join(SOURCE_KINDS)
    branches = [
        line
        for line in _code_lines(
            rf"source\.kind\s*(==|!=|in\b)|[\"']({kind_names})[\"']|isinstance\([^)]*Source\b"
        )
        if not line.startswith(("sources/", "contracts/model.py"))
    ]
    assert branches == []
