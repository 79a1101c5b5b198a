"""Each DAG's runbook (its ``doc_md``) names its tasks as the code does, in the order they run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STEP = re.compile(r"^\s*\d+\.\s+(?P<names>(?:`[a-z0-9_]+`(?:\s*\([^)]*\))?(?:,\s*|\s+and\s+)?)+):", re.M)
NAME = re.compile(r"`([a-z0-9_]+)`")


@pytest.fixture(scope="module")
def dags():
    from airflow.dag_processing.dagbag import DagBag

    return list(DagBag(str(REPO / "dags")).dags.values())


def steps_section(doc: str) -> str:
    return doc.split("## What it does", 1)[1].split("\n## ", 1)[0]


def runbook_mismatches(dag) -> list[str]:
    """Steps named that are no task, tasks not named, and steps named before the tasks they follow."""
    section = steps_section(dag.doc_md)
    named = [name for match in STEP.finditer(section) for name in NAME.findall(match.group("names"))]
    problems = [f"names a step that is no task: {name}" for name in named if name not in dag.task_dict]
    problems += [f"does not name the task {t}" for t in sorted(dag.task_dict) if t not in named]
    first = {name: named.index(name) for name in named}
    for task in dag.tasks:
        for later in task.downstream_list:
            if (
                task.task_id in first
                and later.task_id in first
                and first[later.task_id] < first[task.task_id]
            ):
                problems.append(f"names {later.task_id} before {task.task_id}, which runs first")
    return problems


def test_every_runbook_names_its_dag_s_tasks_in_order(dags):
    for dag in dags:
        assert runbook_mismatches(dag) == [], dag.dag_id


def test_the_check_catches_a_runbook_of_another_design():
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG

    doc = """
## What it does
1. `dump_to_s3`: the dump, to `.incoming/`.
2. `verify_backup`: reads it back.
3. `publish_backup`: copies it.

## Triage
"""
    with DAG("stale_runbook", schedule=None, doc_md=doc) as dag:
        EmptyOperator(task_id="publish_backup") >> EmptyOperator(task_id="dump_to_s3")
    assert runbook_mismatches(dag) == [
        "names a step that is no task: verify_backup",
        "names dump_to_s3 before publish_backup, which runs first",
    ]
