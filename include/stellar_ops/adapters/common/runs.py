"""Starting another DAG's run from a task, as ``TriggerDagRunOperator`` does, without waiting for it."""

from __future__ import annotations

from typing import Any


def start_run(dag_id: str, run_id: str, conf: dict[str, Any], note: str) -> Exception:
    """The exception that, raised from a task, starts run ``run_id`` of ``dag_id`` with ``conf``.

    Once: a cleared task whose run was started already starts no second one.
    """
    from airflow.sdk.exceptions import DagRunTriggerException

    return DagRunTriggerException(
        trigger_dag_id=dag_id,
        dag_run_id=run_id,
        conf=conf,
        logical_date=None,
        reset_dag_run=False,
        skip_when_already_exists=True,
        wait_for_completion=False,
        allowed_states=["success"],
        failed_states=["failed"],
        poke_interval=60,
        deferrable=False,
        note=note,
    )
