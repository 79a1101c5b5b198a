"""Clear keeps working, and keeps each run's deadline, on Airflow 3.3.0 to 3.3.2.

Why this exists: clearing task instances (the UI's Clear on a task or a run,
``POST /api/v2/dags/{dag_id}/clearTaskInstances``, ``POST .../dagRuns/{run_id}/clear``, a backfill
that re-runs existing runs, ``airflow tasks clear``) goes through Airflow's
``clear_task_instances``. It re-queues the run and moves each of its unmissed
``DeadlineReference.DAGRUN_QUEUED_AT`` deadlines to the new ``queued_at`` in
``airflow.models.taskinstance._recalculate_dagrun_queued_at_deadlines``. Since 3.3.0 the
``deadline_alert.interval`` column holds the interval as JSON (``{"__classname__":
"datetime.timedelta", "__version__": 2, "__data__": 10800.0}``), but that function hands it to
``timedelta(seconds=...)`` as it is: ``TypeError: unsupported type for timedelta seconds
component: dict``, an HTTP 500 and nothing cleared (apache/airflow#70368). Every DAG here has such
a deadline (:mod:`stellar_ops.adapters.common.deadlines`), so Clear failed on every DAG while a run
was within its deadline.

What it does: :func:`install` (called by the package's plugin,
:mod:`stellar_ops.adapters.common.plugin`, in every Airflow process that loads plugins, the API
server among them) puts :func:`recalculate_queued_at_deadlines`
in that function's place. It decodes the interval as Airflow does when it creates a run's deadline
(``decode_deadline_alert``; an interval read from a Variable is resolved), which is also what the
upstream fix (apache/airflow#70370) does; a deadline whose interval cannot be read keeps its time,
with a warning, rather than failing the whole clear, as upstream's fix does too.

When it stops applying: :func:`install` first runs Airflow's own function on one deadline stored
the way Airflow stores it (:func:`has_interval_bug`, no database involved). It replaces it only
when that raises exactly this ``TypeError``. An Airflow that decodes the interval passes the probe
and keeps its own function; one whose function changed in any other way is left alone, with a
warning. Once a fixed Airflow is installed, this module and the plugin can be deleted
(``tests/unit/test_queued_at_deadlines.py`` says so when the installed Airflow has the fix).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

log = logging.getLogger(__name__)

AIRFLOW_FUNCTION = "_recalculate_dagrun_queued_at_deadlines"
INTERVAL_BUG = "unsupported type for timedelta seconds component: dict"

Recalculate = Callable[[Any, datetime, Any], None]


def deadline_interval(alert: Any) -> timedelta:
    """The interval of a ``deadline_alert`` row: its JSON decoded, a Variable's value resolved.

    Raises ValueError or TypeError when the row's interval cannot be read (a missing or
    non-numeric Variable, an unknown type).
    """
    from airflow.serialization.decoders import decode_deadline_alert
    from airflow.serialization.definitions.deadline import DeadlineAlertFields, SerializedVariableInterval

    decoded = decode_deadline_alert(
        {
            DeadlineAlertFields.REFERENCE: alert.reference,
            DeadlineAlertFields.INTERVAL: alert.interval,
            DeadlineAlertFields.CALLBACK: alert.callback_def,
        }
    )
    interval = decoded.interval
    if isinstance(interval, SerializedVariableInterval):
        interval = interval.resolve()
    return interval  # type: ignore[no-any-return]


def recalculate_queued_at_deadlines(dagrun: Any, new_queued_at: datetime, session: Any) -> None:
    """Airflow's ``_recalculate_dagrun_queued_at_deadlines`` with the interval decoded.

    Same query and same effect: each unmissed queued-at deadline of ``dagrun`` becomes
    ``new_queued_at`` plus its interval, in ``session``, uncommitted (the caller commits).
    """
    from airflow.models.deadline import Deadline, ReferenceModels
    from airflow.models.deadline_alert import DeadlineAlert as DeadlineAlertModel
    from sqlalchemy import false, select

    rows = session.execute(
        select(Deadline, DeadlineAlertModel)
        .join(DeadlineAlertModel, Deadline.deadline_alert_id == DeadlineAlertModel.id)
        .where(
            Deadline.dagrun_id == dagrun.id,
            Deadline.missed == false(),
            DeadlineAlertModel.reference[ReferenceModels.REFERENCE_TYPE_FIELD].as_string()
            == ReferenceModels.DagRunQueuedAtDeadline.__name__,
        )
    ).all()
    for deadline, alert in rows:
        try:
            interval = deadline_interval(alert)
        except (ValueError, TypeError):
            log.warning(
                "the deadline of %s run %s keeps its time %s: the interval %r of its alert %s cannot be read",
                dagrun.dag_id,
                dagrun.run_id,
                deadline.deadline_time,
                alert.interval,
                alert.id,
                exc_info=True,
            )
            continue
        deadline.deadline_time = new_queued_at + interval


class _OneRow:
    """A stand-in session whose only query answers one (deadline, deadline alert) row."""

    def __init__(self, deadline: Any, alert: Any) -> None:
        self.row = (deadline, alert)

    def execute(self, _statement: Any) -> Any:
        return SimpleNamespace(all=lambda: [self.row])


def has_interval_bug(recalculate: Recalculate) -> bool | None:
    """Whether ``recalculate`` fails on an interval stored as JSON: True for the bug, False when it
    moves the deadline right, None when it does something else (then it is not this bug).

    It runs on one deadline alert row built as the DAG processor builds it, from a real
    ``DeadlineAlert``, and answers one stand-in query, so it touches no database.
    """
    from airflow.models.deadline_alert import DeadlineAlert as DeadlineAlertModel
    from airflow.sdk.definitions.callback import AsyncCallback
    from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference
    from airflow.serialization.encoders import encode_deadline_alert

    from stellar_ops.adapters.common.deadlines import missed_deadline

    interval = timedelta(minutes=7)
    encoded = encode_deadline_alert(
        DeadlineAlert(
            reference=DeadlineReference.DAGRUN_QUEUED_AT,
            interval=interval,
            callback=AsyncCallback(missed_deadline, kwargs={"dag_id": "probe", "minutes": 7}),
        )
    )
    alert = DeadlineAlertModel(
        reference=encoded["reference"], interval=encoded["interval"], callback_def=encoded["callback"]
    )
    deadline = SimpleNamespace(id=None, deadline_time=None)
    queued_at = datetime(2026, 1, 1, tzinfo=UTC)
    try:
        recalculate(
            SimpleNamespace(id=None, dag_id="probe", run_id="probe"), queued_at, _OneRow(deadline, alert)
        )
    except TypeError as exc:
        if INTERVAL_BUG in str(exc):
            return True
        log.warning("probing %s: %s", AIRFLOW_FUNCTION, exc)
        return None
    except Exception as exc:  # any other failure is some other change, not this bug
        log.warning("probing %s: %s: %s", AIRFLOW_FUNCTION, type(exc).__name__, exc)
        return None
    return False if deadline.deadline_time == queued_at + interval else None


def install() -> bool:
    """Put :func:`recalculate_queued_at_deadlines` in Airflow's place when Airflow has the bug.

    True when it is in place (now or already); idempotent.
    """
    import airflow
    import airflow.models.taskinstance as taskinstance

    current = getattr(taskinstance, AIRFLOW_FUNCTION, None)
    if current is recalculate_queued_at_deadlines:
        return True
    if current is None:
        log.info("Airflow %s has no %s: Clear needs no fix", airflow.__version__, AIRFLOW_FUNCTION)
        return False
    verdict = has_interval_bug(current)
    if verdict is True:
        setattr(taskinstance, AIRFLOW_FUNCTION, recalculate_queued_at_deadlines)
        log.info(
            "Airflow %s cannot read a queued-at deadline's interval when clearing (apache/airflow#70368): "
            "%s decodes it instead",
            airflow.__version__,
            __name__,
        )
        return True
    if verdict is False:
        log.info(
            "Airflow %s clears runs with queued-at deadlines: %s is not needed", airflow.__version__, __name__
        )
    else:
        log.warning(
            "Airflow %s's %s changed: %s leaves it alone; check that Clear works on a DAG with a deadline",
            airflow.__version__,
            AIRFLOW_FUNCTION,
            __name__,
        )
    return False
