"""Every DAG's deadline: an alert, with its severity, when a run is not done in time.

:func:`deadline_for` gives ``procedure_dag`` the DAG's ``DeadlineAlert``: its runs must be done
within the procedure's expected time of being queued (``DeadlineReference.DAGRUN_QUEUED_AT``), or
:func:`missed_deadline` alerts on the severity's route while the run is still going. A deadline is
part of the DAG's definition, and parsing does no I/O, so the deadlines are configured by the
environment of the DAG processor (``STELLAR_OPS_DEADLINES``, a :class:`DeadlinesConfig` as JSON),
not by the Variable. ``dag.test()`` cannot run a DAG that has a deadline: tests switch them off
there (``{"enabled": false}``) and test them under a live scheduler.
"""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import timedelta
from typing import Any

from stellar_ops.core.config import DeadlinesConfig
from stellar_ops.core.durations import humanize_duration
from stellar_ops.core.errors import ConfigError
from stellar_ops.core.incidents import Event
from stellar_ops.core.taxonomy import DagEntry

log = logging.getLogger(__name__)

DEADLINES_ENV = "STELLAR_OPS_DEADLINES"


def deadlines_config(env: dict[str, str] | None = None) -> DeadlinesConfig:
    raw = (os.environ if env is None else env).get(DEADLINES_ENV, "").strip()
    if not raw:
        return DeadlinesConfig()
    try:
        return DeadlinesConfig.model_validate_json(raw)
    except ValueError as exc:
        raise ConfigError(
            f"{DEADLINES_ENV} is not a valid deadlines config: {' '.join(str(exc).split())}"
        ) from None


def deadline_minutes(entry: DagEntry, config: DeadlinesConfig) -> float:
    return config.minutes.get(entry.dag_id, float(entry.expected_minutes))


def deadline_for(entry: DagEntry, env: dict[str, str] | None = None) -> Any | None:
    """The ``DeadlineAlert`` of ``entry``'s DAG, or None when deadlines are switched off."""
    config = deadlines_config(env)
    if not config.enabled:
        return None
    from airflow.sdk.definitions.callback import AsyncCallback
    from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference

    minutes = deadline_minutes(entry, config)
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=timedelta(minutes=minutes),
        callback=AsyncCallback(missed_deadline, kwargs={"dag_id": entry.dag_id, "minutes": minutes}),
    )


async def missed_deadline(context: Any = None, *, dag_id: str, minutes: float, **_: Any) -> None:
    """The deadline's callback, run by the triggerer (whose callbacks may read the config Variable
    and the connections; the executor's may not): the alert and the incident's event."""
    await asyncio.to_thread(alert_missed_deadline, context, dag_id=dag_id, minutes=minutes)


def alert_missed_deadline(context: Any, *, dag_id: str, minutes: float) -> None:
    """The alert, on the route of the DAG's severity (and Alertmanager), and the incident's event."""
    from stellar_ops.adapters.common.alerting import (
        _now,
        airflow_url,
        config_or_defaults,
        record,
        route,
        tell_alertmanager,
    )
    from stellar_ops.core.alerts import deadline_message, runbook_url
    from stellar_ops.registry import procedure_for

    entry = procedure_for(dag_id)
    config = config_or_defaults()
    dag_run = (context or {}).get("dag_run") or {}
    run_id = str(_field(dag_run, "dag_run_id") or _field(dag_run, "run_id") or "unknown run")
    queued = _field(dag_run, "queued_at")
    state = str(_field(dag_run, "state") or "")
    if state in ("failed", "success"):
        # a run that succeeded has no deadline left; one that failed was alerted on by its task
        log.info("%s run %s is %s: its deadline is no news", dag_id, run_id, state)
        return
    payload = deadline_message(
        entry,
        config.alerts,
        run_id=run_id,
        queued_at=str(queued) if queued else None,
        minutes=minutes,
        dag_page=runbook_url(config.alerts, dag_id, airflow_url()),
    )
    channel = route(config, entry, payload)
    deadline = humanize_duration(minutes * 60)
    tell_alertmanager(config, entry, summary=f"{dag_id} run {run_id} missed its deadline of {deadline}")
    record(
        dag_id,
        Event(
            _now(),
            "deadline",
            run_id,
            detail=f"not done {deadline} after being queued; {entry.severity} alert to the {channel} channel",
        ),
    )
    log.warning("%s run %s missed its deadline of %s", dag_id, run_id, deadline)


def _field(value: Any, name: str) -> Any:
    return value.get(name) if isinstance(value, dict) else getattr(value, name, None)
