"""The package's modules import in one direction: no circles, counting every import.

Why a test and not a convention: a circle is easy to add (one import inside a function to get at
a helper above you) and then invisible, since Python resolves it at run time. The graph is read
from the source with ``ast``, so imports at module level, inside functions and under
``if TYPE_CHECKING:`` all count: each one says which module stands on which. A package's
``__init__`` may gather its children (importing a child does not count as importing the package),
which is how ``audit/__init__`` re-exports the trail and the chain. See docs/architecture.md.
"""

from __future__ import annotations

import ast
from pathlib import Path

import grantex_local

PACKAGE = Path(grantex_local.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _targets(module: str, path: Path, node: ast.Import | ast.ImportFrom, known: set[str]) -> set[str]:
    """The package modules one import statement names (``from . import x`` names ``x`` too)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        here = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        base = here[: len(here) - node.level + 1] if node.level else []
        base += node.module.split(".") if node.module else []
        names = [".".join(base)] + [".".join([*base, alias.name]) for alias in node.names]
    # An ancestor package is not an edge: a child never needs its package's __init__ to run first
    # for the graph's sake, and counting it would make every re-exporting __init__ a circle.
    return {n for n in names if n in known and n != module and not module.startswith(n + ".")}


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere in its source."""
    modules = _modules()
    known = set(modules)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                graph[module] |= _targets(module, path, node, known)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return sorted(found)


def _path_in(component: list[str], graph: dict[str, set[str]]) -> list[str]:
    """One concrete loop through a component, to name in the failure (a -> b -> ... -> a)."""
    members = set(component)
    start = component[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:  # breadth first from start, back to start
        nxt_frontier = []
        for node in frontier:
            for nxt in sorted(graph[node] & members):
                if nxt == start:
                    back = [node]
                    while back[-1] != start:
                        back.append(previous[back[-1]])
                    return [*reversed(back), start]
                if nxt not in previous:
                    previous[nxt] = node
                    nxt_frontier.append(nxt)
        frontier = nxt_frontier
    return component


def test_the_package_has_no_import_circles() -> None:
    graph = import_graph()
    found = circles(graph)
    described = [" -> ".join(_path_in(c, graph)) + f"   (all of: {', '.join(c)})" for c in found]
    assert not found, "import circles (module-level, in-function and TYPE_CHECKING imports count):\n" + \
        "\n".join(described)


def test_the_walk_sees_every_kind_of_import() -> None:
    """The graph is only as good as its reading: these edges are known to exist."""
    graph = import_graph()
    assert "grantex_local.ledger" in graph["grantex_local.founding"]  # module level
    assert "grantex_local.developers" in graph["grantex_local.founding"]  # inside a method
    assert "grantex_local.ledger" in graph["grantex_local.developers"]  # under TYPE_CHECKING
    assert "grantex_local.audit.trail" in graph["grantex_local.audit"]  # a package gathering a child
    assert "grantex_local.audit" not in graph["grantex_local.audit.trail"]  # ...which is not a circle


def test_a_circle_is_found_and_named() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert circles(graph) == [["a", "b", "c"]]
    assert _path_in(["a", "b", "c"], graph) == ["a", "b", "c", "a"]
