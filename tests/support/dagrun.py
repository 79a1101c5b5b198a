"""Run a real DAG of the repository with ``dag.test()`` and read back what happened."""

from __future__ import annotations

import copy
import functools
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
# What one task may hand the next through XCom, serialized: a reference (an S3 key) or a short
# summary, never a document whose size grows with the data (docs/deployment.md, "XCom").
XCOM_LIMIT_BYTES = 4 * 1024


@functools.cache
def dagbag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(REPO / "dags"))
    assert not bag.import_errors, bag.import_errors
    return bag


def get_dag(dag_id: str) -> Any:
    return dagbag().dags[dag_id]


@dataclass
class Outcome:
    dag_id: str
    run_id: str
    state: str
    tasks: dict[str, str] = field(default_factory=dict)
    tries: dict[str, int] = field(default_factory=dict)

    def xcom(self, task_id: str) -> Any:
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session

        with create_session() as session:
            row = (
                session.query(XComModel)
                .filter_by(dag_id=self.dag_id, run_id=self.run_id, task_id=task_id, key="return_value")
                .one_or_none()
            )
            if row is None:
                return None
            value = row.value
        return json.loads(value) if isinstance(value, str) else value


def run_dag(
    dag_id: str, *, conf: dict[str, Any] | None = None, logical_date: datetime | None = None
) -> Outcome:
    """One run (a re-run if the logical date was run before), in this process, to the end."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.sdk.definitions._internal.expandinput import EXPAND_INPUT_EMPTY
    from airflow.utils.session import create_session

    # Mapped @task operators test their expand input against this sentinel by identity.
    dag = copy.deepcopy(get_dag(dag_id), {id(EXPAND_INPUT_EMPTY): EXPAND_INPUT_EMPTY})
    # In-process runs share parsed DAGs, whose Params keep the last run's conf as their value:
    # pass every param explicitly so each run starts from the declared defaults.
    defaults = {name: dag.params.get_param(name).value for name in dag.params}
    kwargs: dict[str, Any] = {"run_conf": {**defaults, **(conf or {})}}
    if logical_date is not None:
        kwargs["logical_date"] = logical_date
    run = dag.test(**kwargs)
    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=dag_id, run_id=run.run_id).all()
        tasks = {ti.task_id: str(ti.state.value if hasattr(ti.state, "value") else ti.state) for ti in tis}
        tries = {ti.task_id: int(ti.try_number or 0) for ti in tis}
    state = run.state.value if hasattr(run.state, "value") else str(run.state)
    outcome = Outcome(dag_id=dag_id, run_id=run.run_id, state=str(state), tasks=tasks, tries=tries)
    assert_xcoms_small(outcome)
    return outcome


def xcom_sizes(dag_id: str, run_id: str) -> dict[str, int]:
    """The serialized size in bytes of every XCom of one run, by ``task[map_index].key``."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    sizes: dict[str, int] = {}
    with create_session() as session:
        for row in session.query(XComModel).filter_by(dag_id=dag_id, run_id=run_id):
            value = row.value
            text = value if isinstance(value, str) else json.dumps(value)
            where = row.task_id + (f"[{row.map_index}]" if row.map_index >= 0 else "")
            sizes[f"{where}.{row.key}"] = len(text.encode())
    return sizes


def assert_xcoms_small(outcome: Outcome, limit: int = XCOM_LIMIT_BYTES) -> dict[str, int]:
    """Every XCom of the run is at most ``limit`` bytes; the sizes, or an error naming each too big."""
    sizes = xcom_sizes(outcome.dag_id, outcome.run_id)
    too_big = {where: size for where, size in sizes.items() if size > limit}
    assert not too_big, (
        f"{outcome.dag_id} run {outcome.run_id}: XComs over {limit} bytes (pass an S3 key or a summary): "
        + ", ".join(f"{where} {size} bytes" for where, size in sorted(too_big.items()))
    )
    return sizes
