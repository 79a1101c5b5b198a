"""DAG parse time: each file, and the whole folder, against a bare ``import airflow.sdk``."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.report import table

REPO = Path(__file__).resolve().parents[1]
PROBE = r"""
import json, sys, time
t0 = time.perf_counter()
import airflow.sdk
t1 = time.perf_counter()
target = sys.argv[1]
if target == "-":
    pass
elif target.endswith(".py"):
    import runpy
    runpy.run_path(target)
else:
    from airflow.dag_processing.dagbag import DagBag
    bag = DagBag(target)
    assert not bag.import_errors, bag.import_errors
t2 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "parse": t2 - t1}))
"""


def _sample(target: str, repeat: int) -> dict[str, float]:
    imports, parses = [], []
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, "-c", PROBE, target], capture_output=True, text=True, check=True, timeout=300
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        imports.append(result["import"])
        parses.append(result["parse"])
    return {"import": statistics.median(imports), "parse": statistics.median(parses)}


def run(repeat: int = 5) -> dict[str, Any]:
    bare = _sample("-", repeat)["import"]
    rows, results = [], {"bare_import_airflow_sdk_seconds": bare, "files": {}}
    for path in sorted((REPO / "dags").glob("*.py")):
        sample = _sample(str(path), repeat)
        results["files"][path.name] = sample["parse"]
        rows.append([path.name, f"{sample['parse'] * 1000:.0f} ms", f"{sample['parse'] / bare:.2f}x"])
    folder = _sample(str(REPO / "dags"), repeat)["parse"]
    results["folder_seconds"] = folder
    rows.append(["dags/ (DagBag)", f"{folder * 1000:.0f} ms", f"{folder / bare:.2f}x"])
    table(
        f"DAG parse time (median of {repeat}; baseline: bare `import airflow.sdk` = {bare * 1000:.0f} ms)",
        ["what", "parse time", "vs import airflow.sdk"],
        rows,
    )
    return results
