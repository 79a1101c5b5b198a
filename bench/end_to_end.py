"""The backup as the operator waits for it: ``stellar-ops backup`` as a process, and ``db_backup``
run by ``dag.test()`` with its task durations summed (from the first task to the manifest).

``python -m bench.end_to_end STATE_FILE dag PREFIX SLOT`` runs the DAG in a process of its own
(a private AIRFLOW_HOME and SQLite metadata database, the stack's connections) and prints a JSON
line; :func:`cli_backup` runs the CLI and samples its peak RSS.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from stellar_ops_dev.stack import StackInfo

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# db_backup's tasks from the first to the manifest: what stands between the slot and a verified backup
TO_THE_MANIFEST = ("check_prerequisites", "dump_to_s3", "verify_backup", "publish_backup")


def _peak_rss_mb(pid: int, stop: threading.Event, seen: list[float]) -> None:
    while not stop.is_set():
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    seen.append(int(line.split()[1]) / 1024)
        except OSError:
            return
        time.sleep(0.05)


def cli_backup(info: StackInfo, prefix: str, slot: str) -> dict[str, Any]:
    """``stellar-ops backup`` with the stack's environment, end to end; wall time and peak RSS."""
    env = {k: v for k, v in {**os.environ, **info.env()}.items() if not k.startswith("AIRFLOW_")}
    config = {**info.ops_config(), "backup": {"prefix": prefix, "notify_on_success": False}}
    env["STELLAR_OPS_CONFIG"] = json.dumps(config)
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(BIN / "stellar-ops"), "backup", "--slot", slot],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stop, seen = threading.Event(), [0.0]
    sampler = threading.Thread(target=_peak_rss_mb, args=(process.pid, stop, seen), daemon=True)
    sampler.start()
    out, err = process.communicate(timeout=3600)
    seconds = time.perf_counter() - started
    stop.set()
    if process.returncode != 0:
        raise RuntimeError(f"stellar-ops backup failed: {err[-2000:]}")
    return {"seconds": seconds, "peak_rss_mb": max(seen), "key": json.loads(out)["key"]}


def dag_backup(state: Path, prefix: str, slot: str) -> dict[str, Any]:
    """``db_backup`` through ``dag.test()`` in its own process; the run's and the tasks' durations."""
    home = Path(tempfile.mkdtemp(prefix="stellar-bench-airflow-"))
    out = subprocess.run(
        [sys.executable, "-m", "bench.end_to_end", str(state), "dag", prefix, slot],
        capture_output=True,
        text=True,
        timeout=3600,
        cwd=REPO,
        env={**os.environ, "AIRFLOW_HOME": str(home)},
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _run_dag_here(info: StackInfo, prefix: str, slot: str) -> dict[str, Any]:
    os.environ.update(
        {
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "STELLAR_OPS_DEADLINES": '{"enabled": false}',
            "AIRFLOW_VAR_STELLAR_OPS_CONFIG": json.dumps(
                {"backup": {"prefix": prefix, "notify_on_success": False}, "metrics": {"push_to_api": False}}
            ),
        }
    )
    for conn_id, conn in info.airflow_connections().items():
        os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(conn)
    subprocess.run([str(BIN / "airflow"), "db", "migrate"], check=True, capture_output=True, timeout=600)

    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    dag = DagBag(str(REPO / "dags")).dags["db_backup"]
    started = time.perf_counter()
    run = dag.test(logical_date=datetime.fromisoformat(slot))
    wall = time.perf_counter() - started
    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id="db_backup", run_id=run.run_id).all()
        durations = {ti.task_id: float(ti.duration or 0) for ti in tis}
        states = {ti.task_id: str(ti.state) for ti in tis}
    if any(states.get(t) != "success" for t in TO_THE_MANIFEST):
        raise RuntimeError(f"db_backup did not succeed: {states}")
    return {
        "run_seconds": wall,
        "to_the_manifest_seconds": sum(durations[t] for t in TO_THE_MANIFEST),
        "tasks": durations,
    }


def main() -> None:
    info = StackInfo.load(sys.argv[1])
    if sys.argv[2] != "dag":
        raise SystemExit(f"unknown mode {sys.argv[2]!r}")
    print(json.dumps(_run_dag_here(info, sys.argv[3], sys.argv[4])))


if __name__ == "__main__":
    main()
