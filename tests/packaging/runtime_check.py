"""Run by the fresh-virtualenv test with that virtualenv's interpreter (so only the runtime set and
the installed wheel are importable): import every module of stellar_ops but stellar_ops.dev, then
parse the DAGs as the DAG processor does, and print what was found as JSON.

    python runtime_check.py DAGS_FOLDER [--imports-only] [--hide MODULE]

``--hide MODULE`` makes MODULE unimportable first, as if the runtime set lacked its distribution:
the test uses it to show that a missing package is reported.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.abc
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


def import_all(package: ModuleType, skip: str, errors: dict[str, str]) -> list[str]:
    """Import the package's modules depth first, never importing ``skip`` or what is under it."""
    imported = []
    for info in pkgutil.iter_modules(package.__path__, f"{package.__name__}."):
        if info.name == skip or info.name.startswith(f"{skip}."):
            continue
        try:
            module = importlib.import_module(info.name)
        except Exception:
            errors[info.name] = traceback.format_exc(limit=-3)
            continue
        imported.append(info.name)
        if info.ispkg:
            imported += import_all(module, skip, errors)
    return imported


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dags_folder")
    parser.add_argument("--imports-only", action="store_true")
    parser.add_argument("--hide")
    args = parser.parse_args()
    if args.hide:
        sys.meta_path.insert(0, Hidden(args.hide))
    import stellar_ops

    errors: dict[str, str] = {}
    report: dict[str, object] = {
        "package_file": stellar_ops.__file__,
        "imported": import_all(stellar_ops, "stellar_ops.dev", errors),
        "import_errors": errors,
        # nothing production runs may need stellar_ops.dev, whose imports are not the runtime's
        "dev_loaded": sorted(
            m for m in sys.modules if m == "stellar_ops.dev" or m.startswith("stellar_ops.dev.")
        ),
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
    print(json.dumps(report))


if __name__ == "__main__":
    main()
