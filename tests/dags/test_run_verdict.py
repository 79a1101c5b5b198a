"""A run's colour is the procedure's verdict: a failed step of the work fails the run.

Read from each DAG's structure: every task that is not a teardown is failed in turn, the failure is
carried downstream by the trigger rules as the scheduler carries it, and the run's verdict task
must end ``upstream_failed``, a leaf Airflow counts, so the run is red.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from stellar_ops.adapters.common.verdict import VERDICT_TASK, carries_failure

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dags():
    from airflow.dag_processing.dagbag import DagBag

    return list(DagBag(str(REPO / "dags")).dags.values())


def failures_lost(dag) -> list[str]:
    """The tasks whose failure would leave every leaf Airflow counts green."""
    counted = [
        t for t in dag.tasks if not t.downstream_list and (not t.is_teardown or t.on_failure_fail_dagrun)
    ]
    lost = []
    for failed in dag.tasks:
        if failed.is_teardown:
            continue
        red = {failed.task_id}
        for task in dag.topological_sort():
            if task.task_id not in red and carries_failure(task) and red & task.upstream_task_ids:
                red.add(task.task_id)
        if not any(leaf.task_id in red for leaf in counted):
            lost.append(failed.task_id)
    return lost


def test_a_failed_step_of_any_dag_turns_its_run_red(dags):
    assert len(dags) == 13
    for dag in dags:
        assert failures_lost(dag) == [], f"{dag.dag_id}: a failure of these would leave the run green"


def test_every_dag_ends_with_its_verdict(dags):
    for dag in dags:
        verdict = dag.get_task(VERDICT_TASK)
        assert verdict.downstream_list == [], dag.dag_id
        assert not verdict.is_teardown, dag.dag_id
        assert verdict.trigger_rule == "none_failed", dag.dag_id
        assert type(verdict).__name__ == "EmptyOperator", f"{dag.dag_id}: the scheduler settles it, no worker"


def test_the_check_finds_a_report_leaf_that_hides_a_failure():
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG, TriggerRule

    with DAG(
        "hidden_failure", schedule=None, default_args={"execution_timeout": timedelta(minutes=1)}
    ) as dag:
        restore_backup = EmptyOperator(task_id="restore_backup")
        verify_schema = EmptyOperator(task_id="verify_schema")
        publish_report = EmptyOperator(task_id="publish_report", trigger_rule=TriggerRule.ALL_DONE)
        restore_backup >> verify_schema >> publish_report
    assert failures_lost(dag) == ["restore_backup", "verify_schema"]

    from stellar_ops.adapters.common.verdict import add_verdict

    add_verdict(dag)
    assert failures_lost(dag) == []
    assert {t.task_id for t in dag.get_task(VERDICT_TASK).upstream_list} == {
        "verify_schema",
        "publish_report",
    }


def test_the_scheduler_settles_every_verdict_without_a_worker(dags):
    """Airflow short-circuits an EmptyOperator only without execute or success callbacks: with one
    (the default args' outbox drain), the verdict would wait for a worker of its queue, for ever
    under a CeleryExecutor whose workers serve other queues."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.serialization.serialized_objects import DagSerialization

    for dag in dags:
        serialized = DagSerialization.from_dict(DagSerialization.to_dict(dag))
        verdict = serialized.get_task(VERDICT_TASK)
        assert not TaskInstance.is_task_schedulable(verdict), f"{dag.dag_id}'s verdict needs a worker"
        work = [t for t in serialized.tasks if t.task_id != VERDICT_TASK]
        assert all(TaskInstance.is_task_schedulable(t) for t in work)
