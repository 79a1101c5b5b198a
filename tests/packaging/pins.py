"""What the packaging tests read: the pin files, the dependencies of pyproject (and of
dev/pyproject.toml, the development tooling's distribution), and the imports of the code from
other distributions, mapped to the distributions that provide them."""

from __future__ import annotations

import ast
import importlib.metadata as md
import sys
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
RUNTIME_FILE = REPO / "requirements-runtime.txt"
DEV_FILE = REPO / "requirements-dev.txt"
PACKAGE = REPO / "include" / "stellar_ops"
# the development tooling: a distribution of its own (stellar-ops-dev), which the wheel never holds
DEV_PROJECT = REPO / "dev" / "pyproject.toml"
DEV_PACKAGE = REPO / "dev" / "stellar_ops_dev"


def pins(path: Path) -> dict[str, str]:
    """``{canonical name: version}`` of a pin file's ``name==version`` lines (``-r`` lines skipped)."""
    found: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-r "):
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"{path.name}:{number}: not an == pin: {raw}"
        name = canonicalize_name(req.name)
        assert name not in found, f"{path.name}:{number}: {name} is pinned twice"
        found[name] = specs[0].version
    return found


def project(path: Path = REPO / "pyproject.toml") -> dict:
    return tomllib.loads(path.read_text())["project"]


def requirement_names(lines: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(line).name) for line in lines}


def runtime_sources() -> list[Path]:
    """The code production runs: the package, the DAGs, the plugins."""
    files = list(PACKAGE.rglob("*.py"))
    return sorted(files + list((REPO / "dags").rglob("*.py")) + list((REPO / "plugins").rglob("*.py")))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(node: ast.AST) -> Iterator[str]:
    """Absolute module names imported under ``node``; what only type checkers read is skipped."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                yield from _imports(other)
            continue
        if isinstance(child, ast.Import):
            yield from (alias.name for alias in child.names)
        elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
            yield child.module
        yield from _imports(child)


def third_party_imports(files: list[Path], own: str = "stellar_ops") -> dict[str, set[str]]:
    """``{module: {file, ...}}`` of the modules the files import that are neither the standard
    library nor the files' own package ``own`` (another of the project's, such as stellar_ops_dev
    for the runtime code, counts: it is another distribution)."""
    found: dict[str, set[str]] = {}
    for path in files:
        for module in _imports(ast.parse(path.read_text(), str(path))):
            top = module.partition(".")[0]
            if top in sys.stdlib_module_names or top in ("__future__", own):
                continue
            found.setdefault(module, set()).add(str(path.relative_to(REPO)))
    return found


@cache
def _providers() -> dict[str, list[str]]:
    return md.packages_distributions()


@cache
def _files_of(distribution: str) -> frozenset[str]:
    return frozenset(str(f) for f in md.distribution(distribution).files or [])


def distribution_of(module: str) -> str:
    """The installed distribution that provides ``module``. Where several share the top-level
    package (``airflow``: core, the task SDK, each provider), the one whose files hold the module,
    or else the nearest package above it."""
    top = module.partition(".")[0]
    candidates = _providers().get(top)
    assert candidates, f"{module}: no installed distribution provides {top!r}"
    if len(set(candidates)) == 1:
        return canonicalize_name(candidates[0])
    parts = module.split(".")
    while parts:
        stem = "/".join(parts)
        owners = {
            canonicalize_name(d) for d in candidates if {f"{stem}.py", f"{stem}/__init__.py"} & _files_of(d)
        }
        if owners:
            assert len(owners) == 1, f"{module}: provided by each of {sorted(owners)}"
            return owners.pop()
        parts.pop()
    raise AssertionError(f"{module}: none of {sorted(set(candidates))} holds it")


def distributions_imported(files: list[Path], own: str = "stellar_ops") -> dict[str, set[str]]:
    """``{distribution: {module, ...}}`` for the imports of ``files`` from other distributions."""
    found: dict[str, set[str]] = {}
    for module in third_party_imports(files, own):
        found.setdefault(distribution_of(module), set()).add(module)
    return found
