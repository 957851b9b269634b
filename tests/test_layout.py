"""The layout DESIGN.md asks for: no import circles among the project's modules, a small top.

Every import counts, wherever it stands: at the top of a module, inside a function (a
deferred import still ties the two modules together) or under TYPE_CHECKING. Run as a script
(`python tests/test_layout.py`) it prints each circle it finds.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("aic_worker", "aic_watch")
MAX_TOP_MODULES = 6  # plain modules directly in aic_worker/, beside its packages


def module_files() -> dict[str, Path]:
    """Dotted name -> file, for every module of the project's packages."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imported(tree: ast.AST, name: str, is_package: bool, modules: dict[str, Path]) -> Iterator[str]:
    """The project's modules that the module `name` imports, anywhere in its body."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package, up level - 1 more
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from package import name`: the submodule when there is one, else the package
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                       for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import a.b.c` of a name inside a.b
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {
        name: set(imported(ast.parse(path.read_text(), str(path)), name, path.name == "__init__.py", modules))
        for name, path in modules.items()
    }


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for after in sorted(graph.get(node, ())):
            if after not in index:
                visit(after)
                low[node] = min(low[node], low[after])
            elif after in on_stack:
                low[node] = min(low[node], index[after])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_no_import_cycles_among_the_projects_modules() -> None:
    graph = import_graph()
    assert len(graph) > 50 and "aic_worker.jobs.tasks" in graph["aic_worker.jobs.main"]
    assert import_cycles(graph) == []


def test_the_cycle_finder_finds_a_deferred_circle() -> None:
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_aic_worker_has_at_most_six_plain_modules_at_its_top() -> None:
    top = sorted(p.name for p in (ROOT / "aic_worker").glob("*.py"))
    assert len(top) <= MAX_TOP_MODULES, top


if __name__ == "__main__":
    found = import_cycles(import_graph())
    for cycle in found:
        print("import circle:", " <-> ".join(cycle))
    print(f"{len(found)} import circles among {', '.join(PACKAGES)}")
    sys.exit(1 if found else 0)
