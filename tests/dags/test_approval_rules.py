"""Every approval in every DAG is the package's ``Approval``, and the change-approval table names
who answers it: a human-in-the-loop step without a rule could be answered by anyone."""

from __future__ import annotations

from pathlib import Path

import pytest

from stellar_ops.registry import parse_config

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dags():
    from airflow.dag_processing.dagbag import DagBag

    return list(DagBag(str(REPO / "dags")).dags.values())


def _human_steps(dags):
    from airflow.providers.standard.operators.hitl import HITLOperator

    return [(dag.dag_id, task) for dag in dags for task in dag.tasks if isinstance(task, HITLOperator)]


def test_every_human_step_is_the_package_s_approval_with_a_rule(dags):
    from stellar_ops.adapters.common.approvals import Approval

    approvals = parse_config(None).approvals
    steps = _human_steps(dags)
    assert {f"{d}.{t.task_id}" for d, t in steps} == set(approvals.steps)
    for dag_id, task in steps:
        assert isinstance(task, Approval), f"{dag_id}.{task.task_id} is a {type(task).__name__}"
        approvals.rule(dag_id, task.task_id)


def test_four_eyes_steps_come_after_another_approval(dags):
    """The second pair of eyes is told apart from the first one's answer, so it must follow it."""
    from stellar_ops.adapters.common.approvals import Approval

    approvals = parse_config(None).approvals
    for dag_id, task in _human_steps(dags):
        if approvals.rule(dag_id, task.task_id).four_eyes:
            dag = task.dag
            earlier = [
                t for t in task.get_flat_relative_ids(upstream=True) if isinstance(dag.get_task(t), Approval)
            ]
            assert earlier, f"{dag_id}.{task.task_id} is four-eyes but follows no approval"


def test_db_restore_asks_the_second_approval_only_for_replace(dags):
    dag = next(d for d in dags if d.dag_id == "db_restore")
    assert dag.get_task("approve_replace").ask_only_if == "replace"
    assert "replace" in dag.params
    assert dag.get_task("restore_backup").trigger_rule == "none_failed_min_one_success"
    assert {"approve_restore", "approve_replace"} <= dag.get_task("restore_backup").upstream_task_ids
