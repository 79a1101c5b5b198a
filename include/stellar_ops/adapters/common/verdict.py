"""A run's colour is the procedure's verdict.

Airflow colours a run by its leaf tasks, so a report or a notifier that runs whatever happened
(``ALL_DONE``) and succeeds would turn a run green after the work upstream failed. Every DAG
therefore ends with :data:`VERDICT_TASK`: it follows each task whose failure no downstream task
would carry on, and its trigger rule (``NONE_FAILED``) makes it ``upstream_failed`` (a red run)
as soon as any of those failed, while a step skipped on purpose (a slot already backed up, a
rejected approval, nothing due) still ends green. It is an ``EmptyOperator``, so the scheduler
settles it without a worker.

Teardowns stay outside the verdict (Airflow's own rule): removing a scratch server or writing a
record after the fact is not the procedure's work, and a teardown that must count sets
``on_failure_fail_dagrun``.
"""

from __future__ import annotations

from typing import Any

VERDICT_TASK = "confirm_success"
VERDICT_DOC = (
    "The run's verdict: succeeds when every step of the procedure succeeded or was skipped on purpose, "
    "and is upstream_failed (the run is red) when any of them failed."
)


def carries_failure(task: Any) -> bool:
    """Whether ``task`` becomes upstream_failed when a task it directly follows fails."""
    from airflow.sdk import TriggerRule

    return not task.is_teardown and task.trigger_rule in (
        TriggerRule.ALL_SUCCESS,
        TriggerRule.NONE_FAILED,
        TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS,
    )


def uncarried(tasks: list[Any]) -> list[Any]:
    """The non-teardown tasks whose failure no downstream task would carry to the end of the run."""
    return [
        t
        for t in tasks
        if not t.is_teardown
        and t.task_id != VERDICT_TASK
        and not any(carries_failure(d) for d in t.downstream_list)
    ]


def add_verdict(dag: Any) -> Any:
    """Append the verdict task to ``dag``, after every task whose failure would otherwise be lost."""
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import TriggerRule

    followed = uncarried(list(dag.tasks))
    verdict = EmptyOperator(
        task_id=VERDICT_TASK,
        trigger_rule=TriggerRule.NONE_FAILED,
        doc=VERDICT_DOC,
        dag=dag,
        # the scheduler settles an EmptyOperator without a worker only when it has no execute or
        # success callback: the default args' outbox drain is for the tasks that do work
        on_execute_callback=None,
        on_success_callback=None,
    )
    verdict.set_upstream(followed)
    return verdict
