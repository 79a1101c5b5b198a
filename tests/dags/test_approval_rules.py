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


def test_four_eyes_steps_come_after_the_approvals_they_are_told_apart_from(dags):
    """A four-eyes step excludes the one who triggered the run and every approver before it, so
    every other approval of its DAG is either upstream of it or comes after it, never beside it."""
    from stellar_ops.adapters.common.approvals import Approval

    approvals = parse_config(None).approvals
    four_eyes = 0
    for dag_id, task in _human_steps(dags):
        if approvals.rule(dag_id, task.task_id).four_eyes:
            four_eyes += 1
            dag = task.dag
            upstream = task.get_flat_relative_ids(upstream=True)
            downstream = task.get_flat_relative_ids(upstream=False)
            beside = [
                t.task_id
                for t in dag.tasks
                if isinstance(t, Approval)
                and t.task_id != task.task_id
                and t.task_id not in upstream
                and t.task_id not in downstream
            ]
            assert beside == [], f"{dag_id}.{task.task_id} is four-eyes but {beside} are answered beside it"
    assert four_eyes >= 3


def test_second_approvals_follow_the_first(dags):
    """db_restore's replace and the key rotation's removal are second pairs of eyes."""
    for dag_id, second, first in (
        ("db_restore", "approve_replace", "approve_restore"),
        ("api_key_rotation", "approve_removal", "approve_rollout"),
    ):
        dag = next(d for d in dags if d.dag_id == dag_id)
        assert first in dag.get_task(second).get_flat_relative_ids(upstream=True)


def test_db_restore_asks_the_second_approval_only_for_replace(dags):
    dag = next(d for d in dags if d.dag_id == "db_restore")
    assert dag.get_task("approve_replace").ask_only_if == "replace"
    assert "replace" in dag.params
    assert dag.get_task("restore_backup").trigger_rule == "none_failed_min_one_success"
    assert {"approve_restore", "approve_replace"} <= dag.get_task("restore_backup").upstream_task_ids
