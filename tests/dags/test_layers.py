"""The layer rules: pure modules never import Airflow; DAG files only wire adapters together."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "include" / "stellar_ops"


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


def test_pure_modules_do_not_import_airflow():
    pure = [p for p in PACKAGE.rglob("*.py") if "adapters" not in p.relative_to(PACKAGE).parts]
    assert len(pure) > 15
    for path in pure:
        offenders = sorted(m for m in imported_modules(path) if m == "airflow" or m.startswith("airflow."))
        assert offenders == [], f"{path.relative_to(REPO)} imports {offenders}"


def test_dag_files_import_only_airflow_and_the_adapters():
    for path in sorted((REPO / "dags").glob("*.py")):
        for module in imported_modules(path):
            allowed = module in ("__future__", "datetime", "pendulum") or module.startswith(
                ("airflow.sdk", "stellar_ops.adapters", "stellar_ops.taxonomy")
            )
            assert allowed, f"{path.name} imports {module}: logic belongs in include/stellar_ops"


def test_the_layer_check_can_fail(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from airflow.sdk import Variable\n")
    assert "airflow.sdk" in imported_modules(bad)
