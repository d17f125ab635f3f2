"""The import graph of director/, web/ and metrics/, read from the source (ast), not by
importing: no module imports itself back through others, and the web face and the metrics
read the daemon only through its typed views.

An edge is any import statement of the module, at module level or inside a function, but
not under ``if TYPE_CHECKING`` (which never runs). A deferred import (inside a function) does
not break a circle, it only hides it until the function runs: the daemon importing web
while web imports the daemon is the circle this test was written against. Importing
``a.b.c`` runs ``a`` and ``a.b`` first, so those are edges too, except the packages that hold
the importing module (they are already running when it runs).

What web/ and metrics/ may import of director (ALLOWED_FOR_THE_WEB_FACE):
- ``director`` itself, for ``__version__``;
- ``director.state``, the views every service returns (and the names and constants they
  share);
- ``director.errors``, the exceptions a command to the daemon can raise;
- ``director.hub``, for ``hub.Timeout`` (a command the main greenlet did not answer in time)
  and because the web face runs on the daemon's loop.
Nothing else: not the daemon, and not the VRRP, check or load-balancer internals. They reach
the running daemon only through the object handed to ``web.create_app`` (its ``snapshot()``
returns a ``director.state.State``).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("director", "web", "metrics")
ALLOWED_FOR_THE_WEB_FACE = {"director", "director.state", "director.errors", "director.hub"}


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _statements(tree: ast.Module):
    """Every import statement that can run: all of them but those under TYPE_CHECKING."""
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
            continue
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            pending.extend(node.orelse)
            continue
        pending.extend(ast.iter_child_nodes(node))


def _with_parents(name: str, importer: str, known: dict[str, Path]) -> set[str]:
    """``name`` and the packages importing it runs first (not those holding ``importer``)."""
    parts = name.split(".")
    holding = importer.split(".")
    holders = {".".join(holding[:n]) for n in range(1, len(holding))}
    parents = {".".join(parts[:n]) for n in range(1, len(parts))} - holders
    return (parents | {name}) & known.keys()


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of ours that importing ``name`` runs directly."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in _statements(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                out |= _with_parents(alias.name, name, known)
            continue
        if node.level:
            base = package.split(".")
            base = base[:len(base) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        names = [alias.name for alias in node.names]
        submodules = [f"{target}.{n}" for n in names if f"{target}.{n}" in known]
        if len(submodules) < len(names):       # a name defined by the module ``target`` itself
            out |= _with_parents(target, name, known) | ({target} & known.keys())
        for submodule in submodules:           # ``from . import hub``: a submodule
            out |= _with_parents(submodule, name, known)
    out.discard(name)
    return out


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Each strongly connected component of more than one module (Tarjan), as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def path_between(edges: dict[str, set[str]], start: str, goal: str) -> list[str] | None:
    """One import chain from start to goal (breadth first), for the failure message."""
    previous = {start: None}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for target in sorted(edges.get(node, ())):
            if target in previous:
                continue
            previous[target] = node
            if target == goal:
                chain = [goal]
                while previous[chain[-1]] is not None:
                    chain.append(previous[chain[-1]])
                return chain[::-1]
            queue.append(target)
    return None


def test_the_graph_is_read_from_the_source():
    edges = graph()
    assert "director.daemon" in edges and "web.admin" in edges and "metrics.collector" in edges
    assert "director.hub" in edges["director.daemon"]          # ``from . import hub``
    assert "director.vrrp.fsm" in edges["director.vrrp.instance"]   # ``from . import fsm``
    assert "director.config.diagnostics" in edges["director.config.lexer"]
    assert "director.config" not in edges["director.config.lexer"]     # its own package
    assert "director.vrrp.service" in edges["director.daemon"]          # deferred, counted


def test_no_import_cycle():
    edges = graph()
    found = cycles(edges)
    described = []
    for component in found:
        first = component[0]
        back = next(target for target in sorted(edges[first]) if target in component)
        described.append(" -> ".join([first] + path_between(edges, back, first)))
    assert not found, "import cycles:\n" + "\n".join(described)


def test_web_and_metrics_import_only_the_views_of_director():
    edges = graph()
    wrong = {f"{name} imports {target}"
             for name, targets in edges.items() if name.split(".")[0] in ("web", "metrics")
             for target in targets
             if target.split(".")[0] == "director" and target not in ALLOWED_FOR_THE_WEB_FACE}
    assert not wrong, sorted(wrong)


def test_the_views_load_without_gevent_and_without_the_services():
    """state.py is what config (--dump-json) and the web face share: it must not pull in
    gevent (config never imports it) nor any service."""
    edges = graph()
    reached, pending = set(), ["director.state"]
    while pending:
        for target in edges[pending.pop()] - reached:
            reached.add(target)
            pending.append(target)
    assert reached <= {"director", "director.names"}, sorted(reached)
    source = (ROOT / "director" / "state.py").read_text()
    assert "gevent" not in {alias.name.split(".")[0]
                            for node in ast.walk(ast.parse(source))
                            if isinstance(node, (ast.Import, ast.ImportFrom))
                            for alias in (node.names if isinstance(node, ast.Import)
                                          else [ast.alias(node.module or "")])}
