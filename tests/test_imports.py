"""No import cycles in the package or the Ray Serve deployments.

The graph is built from the source with ``ast`` (nothing is imported): one node per
module, one edge per import statement anywhere in the file (module level, inside
functions, under ``if TYPE_CHECKING``), so a cycle hidden in a function-level import
counts too. ``from a import b`` is an edge to ``a.b`` when that is a module, else to
``a``; relative imports are resolved against the importing module's package. Importing
a submodule is not counted as importing its parent package's ``__init__``, which Python
runs first but which cannot import back into a cycle unless it imports the submodule
itself, an edge counted on its own.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

from edge_allocator.constants import PROJECT_ROOT

PACKAGES = ("edge_allocator", "deployments")


def modules_under(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under each package of ``root``."""
    out: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool,
             known: dict[str, Path]) -> list[str]:
    """The modules of ``known`` one import statement imports."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = module.split(".") if is_package else module.split(".")[:-1]
            package = package[: len(package) - (node.level - 1)]
            base = ".".join([*package, *([base] if base else [])])
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                 for alias in node.names]
    out = []
    for name in names:
        parts = name.split(".")
        while parts and ".".join(parts) not in known:  # `import a.b.f`: the module a.b
            parts.pop()
        if parts:
            out.append(".".join(parts))
    return out


def import_graph(root: Path, packages: Iterable[str] = PACKAGES) -> dict[str, set[str]]:
    """module -> the modules (of ``packages``) it imports, anywhere in its source."""
    known = modules_under(root, packages)
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                graph[name].update(t for t in _targets(node, name, is_package, known)
                                   if t != name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each
    sorted: every import cycle lies inside one of them."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def describe(graph: dict[str, set[str]], component: list[str]) -> str:
    """One concrete cycle through the component, e.g. ``a -> b -> a``."""
    members = set(component)
    start = component[0]
    path, seen = [start], {start}
    while True:
        nxt = sorted(graph[path[-1]] & members)
        back = [w for w in nxt if w == start]
        if back and len(path) > 1:
            return " -> ".join([*path, start])
        step = next((w for w in nxt if w not in seen), None)
        if step is None:  # every neighbour seen: close the loop at the first one on the path
            w = next(w for w in nxt if w in seen)
            return " -> ".join([*path[path.index(w):], w])
        path.append(step)
        seen.add(step)


def test_no_import_cycles() -> None:
    graph = import_graph(PROJECT_ROOT)
    assert "edge_allocator.train.pipeline" in graph and "deployments.app" in graph
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(describe(graph, c) for c in found)


def test_training_modules_import_in_one_direction() -> None:
    """The refactor's point: the sweep and the pipeline share the RL stage through
    train.finetune, and neither imports the other's private parts."""
    graph = import_graph(PROJECT_ROOT)
    assert "edge_allocator.train.pipeline" not in graph["edge_allocator.train.sweep"]
    assert "edge_allocator.train.finetune" in graph["edge_allocator.train.sweep"]


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_detects_a_cycle_through_a_function_level_import(tmp_path: Path) -> None:
    """The checker itself: a cycle closed by an import inside a function, spelled
    ``from package import module``, and a relative one, are all found."""
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg.b import f\n",
        "pkg/b.py": "def f():\n    from pkg import c\n",
        "pkg/c.py": "from . import a\n",
        "pkg/d.py": "import pkg.a\n",  # into the cycle, not part of it
    })
    graph = import_graph(tmp_path, ["pkg"])
    assert graph["pkg.b"] == {"pkg.c"} and graph["pkg.c"] == {"pkg.a"}
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.c"]]
    assert describe(graph, ["pkg.a", "pkg.b", "pkg.c"]) == "pkg.a -> pkg.b -> pkg.c -> pkg.a"


def test_an_acyclic_package_passes(tmp_path: Path) -> None:
    _write(tmp_path, {
        "pkg/__init__.py": "from pkg.a import x\n",
        "pkg/a.py": "x = 1\n",
        "pkg/b.py": "from pkg import a\nfrom pkg.a import x\nimport os\n",
    })
    graph = import_graph(tmp_path, ["pkg"])
    assert graph == {"pkg": {"pkg.a"}, "pkg.a": set(), "pkg.b": {"pkg.a"}}
    assert cycles(graph) == []
