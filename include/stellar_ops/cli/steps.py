"""Running a procedure's steps in order from the CLI, with the alerts its DAG would send.

A step that fails sends the same failure alert its task would (:func:`stellar_ops.core.alerts.failure_alert`),
naming the step as the task and the CLI process as the run.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from stellar_ops.cli.env import airflow_url
from stellar_ops.core.alerts import failure_alert, failure_message
from stellar_ops.core.errors import StellarOpsError
from stellar_ops.registry import procedure_for
from stellar_ops.runtime import Runtime, RuntimeConfig

T = TypeVar("T")
P = ParamSpec("P")


class Steps:
    """Runs steps of ``dag_id`` as run ``cli-<pid>``; remembers which ones failed."""

    def __init__(self, rt: Runtime[RuntimeConfig], dag_id: str) -> None:
        self.rt = rt
        self.entry = procedure_for(dag_id)
        self.run_id = f"cli-{os.getpid()}"
        self.failed: list[str] = []
        # the run's PostgreSQL sessions say whose they are (application_name), as a task's do
        rt.procedure, rt.run_id = dag_id, self.run_id

    def run(self, step: str, action: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return action(*args, **kwargs)
        except StellarOpsError as exc:
            self.alert(step, exc)
            raise

    def alert(self, step: str, error: BaseException) -> None:
        """Send the failure alert of ``step``, as its task's notifier would."""
        self.failed.append(step)
        alert = failure_alert(
            self.entry,
            self.rt.config.alerts,
            task_id=step,
            run_id=self.run_id,
            error=error,
            airflow_url=airflow_url(),
        )
        self.rt.notify(failure_message(alert), self.entry.severity)
