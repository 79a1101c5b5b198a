"""Run by the fresh-virtualenv test with that virtualenv's interpreter (so only the runtime set and
the installed wheel are importable): import every module of stellar_ops, then parse the DAGs as
the DAG processor does, and print what was found as JSON, with whether the development tooling
(stellar_ops_dev, a distribution the wheel does not hold) can be imported or was.

    python runtime_check.py DAGS_FOLDER [--imports-only] [--hide MODULE] [--path DIR]

``--hide MODULE`` makes MODULE unimportable first, as if the runtime set lacked its distribution;
``--path DIR`` puts DIR first on sys.path, as if what it holds were installed: the tests use them
to show that a missing package, and an importable development tooling, are reported.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.abc
import importlib.util
import json
import pkgutil
import sys
import traceback
from types import ModuleType


class Hidden(importlib.abc.MetaPathFinder):
    def __init__(self, name: str) -> None:
        self.name = name

    def find_spec(self, fullname, path, target=None):  # type: ignore[no-untyped-def]
        if fullname == self.name or fullname.startswith(f"{self.name}."):
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


DEV_PACKAGE = "stellar_ops_dev"


def import_all(package: ModuleType, errors: dict[str, str]) -> list[str]:
    """Import the package's modules depth first."""
    imported = []
    for info in pkgutil.iter_modules(package.__path__, f"{package.__name__}."):
        try:
            module = importlib.import_module(info.name)
        except Exception:
            errors[info.name] = traceback.format_exc(limit=-3)
            continue
        imported.append(info.name)
        if info.ispkg:
            imported += import_all(module, errors)
    return imported


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dags_folder")
    parser.add_argument("--imports-only", action="store_true")
    parser.add_argument("--hide")
    parser.add_argument("--path")
    args = parser.parse_args()
    if args.path:
        sys.path.insert(0, args.path)
    if args.hide:
        sys.meta_path.insert(0, Hidden(args.hide))
    import stellar_ops

    errors: dict[str, str] = {}
    report: dict[str, object] = {
        "package_file": stellar_ops.__file__,
        "imported": import_all(stellar_ops, errors),
        "import_errors": errors,
        # the wheel does not hold the development tooling, and nothing production runs needs it
        "dev_importable": importlib.util.find_spec(DEV_PACKAGE) is not None,
    }
    if not args.imports_only:
        from airflow.dag_processing.dagbag import DagBag
        from airflow.serialization.serialized_objects import DagSerialization

        bag = DagBag(args.dags_folder)
        serialization_errors = {}
        for dag_id, dag in bag.dags.items():
            try:  # what the DAG processor stores: needs the package's plugin (its timetable)
                DagSerialization.to_dict(dag)
            except Exception:
                serialization_errors[dag_id] = traceback.format_exc(limit=-3)
        report |= {
            "dag_ids": sorted(bag.dags),
            "dag_import_errors": {str(k): v for k, v in bag.import_errors.items()},
            "serialization_errors": serialization_errors,
        }
    report["dev_loaded"] = sorted(
        m for m in sys.modules if m == DEV_PACKAGE or m.startswith(f"{DEV_PACKAGE}.")
    )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
