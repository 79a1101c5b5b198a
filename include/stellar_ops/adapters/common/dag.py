"""The one DAG header every procedure uses, so a DAG file states only what is its own.

:func:`procedure_dag` sets what STYLE.md asks of every DAG (a fixed UTC start date, no catchup,
one active run, the taxonomy's tags, the runbook as ``doc_md``) and the shared task settings
(:func:`~stellar_ops.adapters.common.alerting.task_defaults`), DAG callbacks, the deadline
alert of :mod:`stellar_ops.adapters.common.deadlines`, and the run's verdict task of
:mod:`stellar_ops.adapters.common.verdict`, added after the DAG's own tasks.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pendulum

from stellar_ops.adapters.common.alerting import dag_callbacks, task_defaults
from stellar_ops.adapters.common.deadlines import deadline_for
from stellar_ops.adapters.common.verdict import add_verdict
from stellar_ops.registry import procedure_for

START_DATE = pendulum.datetime(2026, 1, 1, tz="UTC")


def procedure_dag(
    dag_id: str,
    *,
    schedule: Any,
    doc: str | None,
    execution_timeout: timedelta,
    params: dict[str, Any] | None = None,
    max_active_runs: int = 1,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``@dag(...)`` for the registered DAG ``dag_id``."""
    from airflow.sdk import dag

    entry = procedure_for(dag_id)
    deadline = deadline_for(entry)
    header = dag(
        dag_id=dag_id,
        start_date=START_DATE,
        schedule=schedule,
        catchup=False,
        max_active_runs=max_active_runs,
        tags=entry.tags,
        doc_md=doc,
        default_args=task_defaults(dag_id, execution_timeout=execution_timeout),
        params=params or {},
        **dag_callbacks(dag_id),
        **({"deadline": deadline} if deadline is not None else {}),
    )

    def decorate(build: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(build)
        def build_with_verdict(*args: Any, **kwargs: Any) -> Any:
            from airflow.sdk.definitions._internal.contextmanager import DagContext

            built = build(*args, **kwargs)
            add_verdict(DagContext.get_current())
            return built

        return header(build_with_verdict)  # type: ignore[no-any-return]

    return decorate
