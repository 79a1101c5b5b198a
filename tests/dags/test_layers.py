"""The layer rules of the package (see docs/architecture.md, "Layout").

- pure modules (everything but ``adapters``) never import Airflow;
- runtime modules (the package, the DAG files, the plugins) never import the development tooling,
  ``stellar_ops_dev`` (a distribution of its own under ``dev/``, above the runtime package);
- a procedure's package never imports another procedure's: shared code goes down into ``core``,
  ``postgres``, ``storage`` or ``catalogue``, which import no procedure's package, and each
  only those below it (``core``, ``probes``, ``postgres``, ``storage``, ``catalogue``);
- a composing procedure (``changes``) runs other procedures' steps (a backup, a restore, the
  health checks, the restart backends) and may import their packages; no procedure imports it;
- DAG files import only Airflow's SDK, the standard provider's operators and the adapters.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from stellar_ops import registry

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "include" / "stellar_ops"
# the development tooling (stellar-ops-dev): it may import stellar_ops, never the other way round
DEV_TOOLING = "stellar_ops_dev"
# the shared packages, lowest first: each imports only those before it. ``pitr`` is shared (the DR
# drill and the restore recover with it) and also holds the steps of its own procedure, db_base_backup
SHARED = ("core", "probes", "postgres", "storage", "catalogue", "pitr")
# the procedures made of other procedures' steps: change management backs up, restores, checks
# health and restarts services as db_backup, the drill, the health check and the rotation do
COMPOSING = ("changes",)
# a procedure's package is named after its config section (a shared one is no procedure's own)
PROCEDURE_PACKAGES = sorted({p.section for p in registry.PROCEDURES} - set(SHARED))


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
            if node.module == "stellar_ops":  # `from stellar_ops import backup` names a package
                modules.update(f"stellar_ops.{alias.name}" for alias in node.names)
    return modules


def room_of(module: str) -> str | None:
    """The first package below ``stellar_ops`` that ``module`` lives in (None for other modules)."""
    parts = module.split(".")
    return parts[1] if parts[0] == "stellar_ops" and len(parts) > 1 else None


def is_dev_tooling(module: str) -> bool:
    return module == DEV_TOOLING or module.startswith(f"{DEV_TOOLING}.")


def modules_in(*rooms: str) -> list[Path]:
    return sorted(p for room in rooms for p in (PACKAGE / room).rglob("*.py"))


def test_every_procedure_has_its_package_and_every_package_a_room():
    for procedure in registry.PROCEDURES:
        assert (PACKAGE / procedure.section / "__init__.py").exists(), procedure.section
    rooms = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert rooms == {*PROCEDURE_PACKAGES, *SHARED, "adapters", "cli"}


def test_pure_modules_do_not_import_airflow():
    pure = [p for p in PACKAGE.rglob("*.py") if "adapters" not in p.relative_to(PACKAGE).parts]
    assert len(pure) > 30
    for path in pure:
        offenders = sorted(m for m in imported_modules(path) if m == "airflow" or m.startswith("airflow."))
        assert offenders == [], f"{path.relative_to(REPO)} imports {offenders}"


def test_runtime_modules_do_not_import_development_tooling():
    runtime = [*PACKAGE.rglob("*.py"), *(REPO / "dags").rglob("*.py"), *(REPO / "plugins").rglob("*.py")]
    assert len(runtime) > 30 and (REPO / "dev" / DEV_TOOLING / "__init__.py").exists()
    for path in runtime:
        offenders = sorted(m for m in imported_modules(path) if is_dev_tooling(m))
        assert offenders == [], f"{path.relative_to(REPO)} imports development tooling {offenders}"


@pytest.mark.parametrize("package", sorted(set(PROCEDURE_PACKAGES) - set(COMPOSING)))
def test_a_procedure_package_imports_no_other_procedure(package):
    others = set(PROCEDURE_PACKAGES) - {package}
    for path in modules_in(package):
        offenders = sorted(m for m in imported_modules(path) if room_of(m) in others)
        assert offenders == [], f"{path.relative_to(REPO)} imports another procedure's {offenders}"


@pytest.mark.parametrize("package", COMPOSING)
def test_a_composing_procedure_imports_no_layer_above_it(package):
    above = {"adapters", "cli", "registry", *COMPOSING} - {package}
    for path in modules_in(package):
        offenders = sorted(m for m in imported_modules(path) if room_of(m) in above)
        assert offenders == [], f"{path.relative_to(REPO)} (composing) imports {offenders}"


def test_shared_packages_import_no_procedure_and_no_layer_above():
    above = set(PROCEDURE_PACKAGES) | {"adapters", "cli", "registry", "runtime"}
    for path in modules_in(*SHARED):
        offenders = sorted(m for m in imported_modules(path) if room_of(m) in above)
        assert offenders == [], f"{path.relative_to(REPO)} (shared) imports {offenders}"


def test_shared_packages_import_only_the_shared_packages_below_them():
    for rank, room in enumerate(SHARED):
        above = set(SHARED[rank:]) - {room}
        for path in modules_in(room):
            offenders = sorted(m for m in imported_modules(path) if room_of(m) in above)
            assert offenders == [], (
                f"{path.relative_to(REPO)} ({room}) imports a shared package above it: {offenders}"
            )


def test_dag_files_import_only_airflow_and_the_adapters():
    for path in sorted((REPO / "dags").glob("*.py")):
        for module in imported_modules(path):
            allowed = module in ("__future__", "datetime", "pendulum") or module.startswith(
                # the standard provider's operators (HITL approvals) are wiring too
                ("airflow.sdk", "airflow.providers.standard.operators", "stellar_ops.adapters")
            )
            assert allowed, f"{path.name} imports {module}: logic belongs in include/stellar_ops"


def test_the_layer_checks_can_fail(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from airflow.sdk import Variable\nfrom stellar_ops_dev import stack\n"
        "import stellar_ops_dev.servers\nfrom stellar_ops.dr.flow import x\n"
    )
    found = imported_modules(bad)
    assert "airflow.sdk" in found
    assert sorted(m for m in found if is_dev_tooling(m)) == ["stellar_ops_dev", "stellar_ops_dev.servers"]
    assert not is_dev_tooling("stellar_ops") and not is_dev_tooling("stellar_ops_devices")
    assert room_of("stellar_ops_dev.stack") is None
    assert room_of("stellar_ops.dr.flow") == "dr" and "stellar_ops.dr.flow" in found
