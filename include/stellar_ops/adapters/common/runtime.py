"""Run-time helpers for tasks: the step runtime, the config Variable, the run's slot and context."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, ParamSpec, TypeVar

from stellar_ops.core.config import VARIABLE_NAME
from stellar_ops.core.errors import StellarOpsError
from stellar_ops.registry import StellarOpsConfig, parse_config
from stellar_ops.runtime import Runtime

T = TypeVar("T")
P = ParamSpec("P")

log = logging.getLogger(__name__)


def load_config() -> StellarOpsConfig:
    """The Variable ``stellar_ops_config`` laid over the defaults (read now, never at parse time)."""
    from airflow.sdk import Variable

    raw = Variable.get(VARIABLE_NAME, default=None)
    return parse_config(raw)


def task_runtime(config: StellarOpsConfig | None = None) -> Runtime[StellarOpsConfig]:
    """What a step runs with inside a task: the config, the connections, and the task log."""
    from stellar_ops.adapters.common.connections import AirflowResources

    config = load_config() if config is None else config
    task_log = task_logger()
    procedure, run_id = _current_run()
    return Runtime(
        config,
        AirflowResources(config),
        say=task_log.info,
        warn=task_log.warning,
        procedure=procedure,
        run_id=run_id,
    )


def _current_run() -> tuple[str | None, str | None]:
    """The DAG id and run id of the running task (for application_name); None outside a task."""
    from airflow.sdk import get_current_context

    try:
        context = get_current_context()
    except RuntimeError:
        return None, None
    ti = context.get("ti")
    if ti is None:
        return None, None
    return str(ti.dag_id), str(ti.run_id)


def run_slot(context: Any) -> datetime:
    """The run's slot: its logical date, or ``run_after`` for manual and asset runs, which have none."""
    logical = context.get("logical_date")
    if logical is not None:
        return logical  # type: ignore[no-any-return]
    dag_run = context["dag_run"]
    return dag_run.run_after  # type: ignore[no-any-return]


def current_context() -> Any:
    from airflow.sdk import get_current_context

    return get_current_context()


def run_type(context: Any) -> str:
    kind = context["dag_run"].run_type
    return str(getattr(kind, "value", kind))


def task_states(ti: Any, task_ids: Iterable[str]) -> dict[str, str]:
    """The states of other tasks of this task's run, by task id."""
    states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id], task_ids=list(task_ids))
    return {k: str(getattr(v, "value", v)) for k, v in states.get(ti.run_id, {}).items()}


def try_token(context: Any) -> str:
    """A token unique to this task try, for names that must not collide between tries."""
    ti = context["ti"]
    return f"{ti.try_number}-{str(ti.id)[-12:]}"


def task_logger() -> logging.Logger:
    return logging.getLogger("stellar_ops.task")


def checked(action: Callable[P, T]) -> Callable[P, T]:
    """Wrap a task body: a known failure is logged as one clear line and re-raised without its chain."""

    @functools.wraps(action)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return action(*args, **kwargs)
        except StellarOpsError as exc:
            log.error("%s", exc)
            raise exc.with_traceback(None) from None

    return run
