"""Run-time helpers for tasks: the config Variable, the run's slot, and the current context."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, ParamSpec, TypeVar

from stellar_ops.config import VARIABLE_NAME, StellarOpsConfig, parse_config
from stellar_ops.errors import StellarOpsError

T = TypeVar("T")
P = ParamSpec("P")

log = logging.getLogger(__name__)


def load_config() -> StellarOpsConfig:
    """The Variable ``stellar_ops_config`` laid over the defaults (read now, never at parse time)."""
    from airflow.sdk import Variable

    raw = Variable.get(VARIABLE_NAME, default=None)
    return parse_config(raw)


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


def is_backfill(context: Any) -> bool:
    run_type = getattr(context.get("dag_run"), "run_type", "")
    return str(getattr(run_type, "value", run_type)) == "backfill"


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
