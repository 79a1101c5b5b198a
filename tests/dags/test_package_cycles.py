"""The package's rooms import one another without a cycle (see docs/architecture.md, "Layout").

A room is a first-level part of ``stellar_ops``: a subpackage (``core``, ``backup``, ``cli``, ...)
or a top-level module (``registry``, ``runtime``). Room A points at room B when any module of A
imports anything of B, at module level or inside a function, absolute or relative. Every arrow
must point down: from ``adapters`` and ``cli`` through ``registry``, the procedures and
``runtime`` to the shared packages, so no room ever reaches itself again.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from stellar_ops import registry

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "include" / "stellar_ops"
Graph = dict[str, dict[str, list[str]]]  # room -> room it imports -> where (path:line)


def rooms(package: Path = PACKAGE) -> set[str]:
    packages = {p.name for p in package.iterdir() if (p / "__init__.py").exists()}
    modules = {p.stem for p in package.glob("*.py") if p.name != "__init__.py"}
    return packages | modules


def _module_name(path: Path, package: Path) -> list[str]:
    parts = [package.name, *path.relative_to(package).with_suffix("").parts]
    return parts[:-1] if parts[-1] == "__init__" else parts


def _imported(node: ast.Import | ast.ImportFrom, path: Path, package: Path) -> list[str]:
    """The dotted names ``node`` imports; ``from x import y`` gives ``x.y`` (y may be a module)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:  # relative: from the module's package, up level - 1
        here = _module_name(path, package)
        anchor = here if path.name == "__init__.py" else here[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join([*anchor, *([node.module] if node.module else [])])
    return [f"{base}.{alias.name}" for alias in node.names]


def room_of(module: str, known: set[str], package_name: str = "stellar_ops") -> str | None:
    parts = module.split(".")
    if parts[0] == package_name and len(parts) > 1 and parts[1] in known:
        return parts[1]
    return None  # another distribution, or the package's own __init__ (``__version__``)


def import_graph(package: Path = PACKAGE) -> Graph:
    known = rooms(package)
    graph: Graph = {room: defaultdict(list) for room in known}
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package)
        source = relative.parts[0].removesuffix(".py")
        if source not in known:  # the package's own __init__.py
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for module in _imported(node, path, package):
                target = room_of(module, known, package.name)
                where = f"{relative}:{node.lineno}"
                if target is not None and target != source and where not in graph[source][target]:
                    graph[source][target].append(where)
    return {room: dict(targets) for room, targets in graph.items()}


def find_cycle(graph: Graph) -> list[str] | None:
    """A cycle as the rooms along it (the first repeated at the end), or None."""
    state: dict[str, str] = {}  # "open" while on the path, "done" once all it reaches is explored
    path: list[str] = []

    def visit(room: str) -> list[str] | None:
        state[room] = "open"
        path.append(room)
        for target in sorted(graph.get(room, {})):
            if state.get(target) == "open":
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[room] = "done"
        path.pop()
        return None

    for room in sorted(graph):
        if room not in state and (cycle := visit(room)):
            return cycle
    return None


def describe(graph: Graph, cycle: list[str]) -> str:
    arrows = [f"  {a} -> {b}: {', '.join(graph[a][b][:3])}" for a, b in zip(cycle, cycle[1:], strict=False)]
    return " -> ".join(cycle) + "\n" + "\n".join(arrows)


def test_the_rooms_import_one_another_without_a_cycle():
    graph = import_graph()
    assert {"core", "registry", "runtime", "adapters", "cli"} <= set(graph)
    assert "registry" in graph["cli"] and "runtime" in graph["backup"]  # the graph sees real arrows
    cycle = find_cycle(graph)
    assert cycle is None, "the package's rooms import one another in a cycle:\n" + describe(graph, cycle)


def test_the_runtime_imports_no_procedure_and_not_the_registry():
    """The runtime sits below the procedures: each states what it reads of the config (a protocol
    extending ``RuntimeConfig``), which the registry's root config satisfies, unknown to the runtime."""
    graph = import_graph()
    above = {p.section for p in registry.PROCEDURES} | {"registry", "adapters", "cli"}
    assert set(graph["backup"]) >= {"runtime"} and "dr" in above
    offenders = {room: where for room, where in graph["runtime"].items() if room in above}
    assert offenders == {}, f"runtime.py imports a room above it: {offenders}"


def test_the_cycle_finder_finds_a_cycle_and_where_it_is(tmp_path):
    synthetic: Graph = {
        "core": {},
        "runtime": {"core": ["runtime.py:1"], "registry": ["runtime.py:2"]},
        "registry": {"backup": ["registry.py:1"]},
        "backup": {"runtime": ["backup/flow.py:3"], "core": ["backup/flow.py:4"]},
        "cli": {"registry": ["cli/env.py:1"]},
    }
    cycle = find_cycle(synthetic)
    assert cycle == ["backup", "runtime", "registry", "backup"]
    assert "backup/flow.py:3" in describe(synthetic, cycle)
    assert find_cycle({"a": {"b": ["x"]}, "b": {"c": ["y"]}, "c": {}}) is None
    assert find_cycle({"a": {"a": ["self"]}}) == ["a", "a"]

    # and the graph is built from the imports a package really has, inside functions and relative ones
    package = tmp_path / "stellar_ops"
    for room in ("core", "backup"):
        (package / room).mkdir(parents=True)
        (package / room / "__init__.py").write_text("")
    (package / "__init__.py").write_text("__version__ = '0'\n")
    (package / "runtime.py").write_text("from stellar_ops import __version__\nfrom .core import x\n")
    (package / "registry.py").write_text("from stellar_ops.backup import flow\n")
    (package / "backup" / "flow.py").write_text("def step():\n    import stellar_ops.runtime\n")
    (package / "core" / "x.py").write_text("from .. import registry\n")
    graph = import_graph(package)
    assert graph["runtime"] == {"core": ["runtime.py:2"]}
    assert graph["backup"] == {"runtime": ["backup/flow.py:2"]}
    assert graph["core"] == {"registry": ["core/x.py:1"]}
    assert find_cycle(graph) == ["backup", "runtime", "core", "registry", "backup"]
