"""A test-only DAG with one param of each kind the trigger form renders, echoed by its one task."""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["e2e"],
    params={
        "dry_run": Param(False, type="boolean", title="Dry run"),
        "label": Param("nightly", type="string", title="Label"),
        "batch_size": Param(10, type="integer", minimum=1, title="Batch size"),
        "mode": Param("fast", type="string", enum=["fast", "thorough"], title="Mode"),
        "note": Param(None, type=["null", "string"], title="Note"),
    },
)
def e2e_params_probe() -> None:
    @task
    def echo(params=None) -> dict:
        return {key: params[key] for key in ("dry_run", "label", "batch_size", "mode", "note")}

    echo()


e2e_params_probe()
