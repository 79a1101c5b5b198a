"""The alerting conventions every DAG shares: retries, timeouts, failure and recovery alerts.

- :func:`task_defaults` is the one ``default_args`` builder: retries >= 2 with exponential
  backoff and a cap, an ``execution_timeout``, a retry policy that fails at once on errors a retry
  cannot fix (bad config, a corrupt backup), and the failure notifier.
- :class:`StellarAlertNotifier` sends a task's final failure on its DAG's severity route
  (``alerts.routes``: P1 pages, P2 and P3 go to ops), and to Alertmanager for the severities of
  ``alerts.alertmanager_severities``: DAG, task, run, try, severity and response time, error,
  runbook. :class:`IncidentRecorder` notes every retried try.
- :func:`announce_recovery` (the DAG's ``on_success_callback``) sends the ``RESOLVED`` message on
  the same route when a DAG succeeds after a failure, resolves the Alertmanager alert, and for a
  P1 or P2 incident writes the post-incident review draft to S3 and links it.

The open incident of a DAG (every failed try, alert and missed deadline, see
:mod:`stellar_ops.core.incidents`) is kept in Airflow's own metadata database, so a broken S3 or
database never loses it: one Variable per event (``stellar_ops_incident__<dag_id>__<time>_<digest>``),
so that callbacks running at the same time never overwrite each other's events
(:mod:`stellar_ops.adapters.common.incident_store`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import BaseNotifier
from airflow.sdk.definitions.retry_policy import ExceptionRetryPolicy, RetryAction, RetryRule

from stellar_ops.adapters.common import incident_store
from stellar_ops.adapters.common.outbox import drain_before_task
from stellar_ops.core import alertmanager
from stellar_ops.core.alerts import (
    DEFAULT_AIRFLOW_URL,
    failure_alert,
    failure_message,
    recovery_message,
    runbook_url,
)
from stellar_ops.core.delivery import event_alert_id
from stellar_ops.core.errors import StellarOpsError
from stellar_ops.core.incidents import Event, EventKind, Incident, draft_key, review_draft
from stellar_ops.core.runbooks import runbook_link
from stellar_ops.core.taxonomy import DagEntry
from stellar_ops.registry import StellarOpsConfig, procedure_for

log = logging.getLogger(__name__)

RETRY_DELAY_ENV = "STELLAR_OPS_RETRY_DELAY_SECONDS"
# Retrying cannot fix these: fail at once so the on-call engineer hears about it sooner.
NOT_RETRYABLE = [
    "stellar_ops.core.errors.ConfigError",
    "stellar_ops.core.errors.VerificationError",
    "stellar_ops.core.errors.BackupNotFoundError",
    "stellar_ops.core.errors.TargetRefusedError",
    "stellar_ops.core.errors.ChangeFailed",
]


def _retry_delay() -> timedelta:
    # An environment knob (not I/O) so development stacks and tests can retry in seconds.
    return timedelta(seconds=float(os.environ.get(RETRY_DELAY_ENV, "60")))


def task_defaults(
    dag_id: str,
    *,
    execution_timeout: timedelta,
    retries: int = 2,
    max_retry_delay: timedelta = timedelta(minutes=15),
) -> dict[str, Any]:
    """``default_args`` for every task of ``dag_id`` (task settings only)."""
    procedure = procedure_for(dag_id)
    return {
        "owner": procedure.owner,
        "retries": max(2, retries),
        "retry_delay": _retry_delay(),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": max_retry_delay,
        "retry_policy": ExceptionRetryPolicy(
            rules=[
                RetryRule(
                    exception=list(NOT_RETRYABLE),
                    action=RetryAction.FAIL,
                    reason="configuration or data error: a retry cannot fix it",
                )
            ]
        ),
        "execution_timeout": execution_timeout,
        "on_failure_callback": [StellarAlertNotifier(dag_id=dag_id)],
        "on_retry_callback": [IncidentRecorder(dag_id=dag_id)],
        # every task of every DAG passes here: alerts kept in the outbox go out first
        "on_execute_callback": [drain_before_task],
    }


def dag_callbacks(dag_id: str) -> dict[str, Any]:
    """DAG-level callbacks: plain functions (notifier objects break ``dags test``)."""
    procedure_for(dag_id)  # fail at parse time for a DAG missing from the taxonomy
    return {"on_success_callback": announce_recovery}


def config_or_defaults() -> StellarOpsConfig:
    """Alerts must go out even when the config is what broke: fall back to the defaults."""
    from stellar_ops.adapters.common.runtime import load_config

    try:
        return load_config()
    except StellarOpsError as exc:
        log.warning("stellar_ops_config is invalid (%s); alerting with default settings", exc)
        return StellarOpsConfig()


def airflow_url() -> str:
    from airflow.sdk.configuration import conf

    return str(conf.get("api", "base_url", fallback=DEFAULT_AIRFLOW_URL))


def _redact(text: str) -> str:
    try:
        from airflow.sdk._shared.secrets_masker import redact
    except ImportError:  # pragma: no cover - older SDK layout
        return text
    return str(redact(text))


def route(config: StellarOpsConfig, entry: DagEntry, payload: dict[str, Any]) -> str:
    """Send ``payload`` on the route of ``entry``'s severity; the channel it went to."""
    from stellar_ops.adapters.common.connections import AirflowResources

    channel = config.alerts.routes[entry.severity]
    AirflowResources(config).send_message(payload, channel)
    return channel


def send(config: StellarOpsConfig, payload: dict[str, Any]) -> None:
    """An informational message (no severity): to the ops channel."""
    from stellar_ops.adapters.common.connections import AirflowResources

    AirflowResources(config).send_message(payload)


def tell_alertmanager(
    config: StellarOpsConfig, entry: DagEntry, *, summary: str, resolved: bool = False, **labels: str
) -> None:
    """Post (or resolve) ``entry``'s alert in Alertmanager, if its severity goes there."""
    from stellar_ops.adapters.common.connections import AirflowResources

    if entry.severity not in config.alerts.alertmanager_severities:
        return
    endpoint = AirflowResources(config).endpoint("alertmanager")
    if endpoint is None:
        log.warning(
            "alerts.alertmanager_severities names %s, but there is no Alertmanager connection", entry.severity
        )
        return
    document = alertmanager.alert(
        name=entry.alert_name,
        severity=entry.severity,
        labels={"dag_id": entry.dag_id, **labels},
        summary=summary,
        runbook=entry.runbook,
        runbook_url=runbook_link(entry.runbook, config.alerts.runbook_base_url),
        generator_url=runbook_url(config.alerts, entry.dag_id, airflow_url()),
        resolved=resolved,
        firing_for=None if resolved else alertmanager.FAILURE_FIRES_FOR,
    )
    try:
        alertmanager.post(endpoint, [document])
    except StellarOpsError as exc:  # the message itself went out
        log.warning("not sent to Alertmanager: %s", exc)


class IncidentRecorder(BaseNotifier):
    """Notes a failed try that will be retried in its DAG's open incident (no message is sent)."""

    template_fields = ()

    def __init__(self, *, dag_id: str) -> None:
        super().__init__()
        self.dag_id = dag_id

    def notify(self, context: Any) -> None:
        ti = context["ti"]
        record(self.dag_id, _try_event("retry", ti, context.get("exception")))


class StellarAlertNotifier(BaseNotifier):
    """Failure alert for one task of ``dag_id``, with the DAG's severity and runbook."""

    template_fields = ()

    def __init__(self, *, dag_id: str) -> None:
        super().__init__()
        self.dag_id = dag_id

    def notify(self, context: Any) -> None:
        config = config_or_defaults()
        entry = procedure_for(self.dag_id)
        ti = context["ti"]
        try_number = int(ti.try_number or 1)
        map_index = _map_index(ti)
        alert = failure_alert(
            entry,
            config.alerts,
            task_id=ti.task_id if map_index is None else f"{ti.task_id}[{map_index}]",
            run_id=ti.run_id,
            error=context.get("exception"),
            try_number=try_number,
            max_tries=int(getattr(ti, "max_tries", 0) or 0) + 1,
            airflow_url=airflow_url(),
            log_url=getattr(ti, "log_url", None),
        )
        alert = replace(alert, error=_redact(alert.error))
        record(self.dag_id, _try_event("failure", ti, context.get("exception")))
        message = failure_message(alert)
        message["alert_id"] = event_alert_id(
            self.dag_id, ti.run_id, ti.task_id, map_index, try_number, "failed"
        )
        channel = route(config, entry, message)
        tell_alertmanager(config, entry, summary=f"{self.dag_id}.{ti.task_id} failed: {alert.error[:200]}")
        record(
            self.dag_id,
            Event(
                _now(),
                "alert",
                ti.run_id,
                detail=f"{entry.severity} {entry.alert_name} to the {channel} channel",
            ),
        )


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _try_event(kind: EventKind, ti: Any, exception: BaseException | None) -> Event:
    error = _redact(f"{type(exception).__name__}: {exception}") if exception is not None else None
    return Event(
        _now(),
        kind,
        ti.run_id,
        task_id=ti.task_id,
        try_number=int(ti.try_number or 1),
        error=" ".join(error.split())[:600] if error else None,
        log_url=getattr(ti, "log_url", None),
        map_index=_map_index(ti),
    )


def _map_index(ti: Any) -> int | None:
    """The task instance's map index; None for a task that is not mapped."""
    index = getattr(ti, "map_index", None)
    return index if isinstance(index, int) and index >= 0 else None


def open_incident(dag_id: str) -> Incident | None:
    stored = incident_store.read(procedure_for(dag_id))
    return stored.incident if stored else None


def record(dag_id: str, event: Event) -> None:
    """Add ``event`` to ``dag_id``'s open incident (opening one), in a Variable of its own: callbacks
    recording at the same moment never overwrite each other's events."""
    procedure_for(dag_id)  # a DAG missing from the taxonomy is a bug: fail loudly
    try:
        incident_store.add(dag_id, event)
    except Exception as exc:  # noqa: BLE001 - the alert itself goes out; the timeline is best effort
        log.warning("could not record the incident of %s: %s", dag_id, exc)


def _task_state(dag_id: str, run_id: str, task_id: str) -> str | None:
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    states = RuntimeTaskInstance.get_task_states(dag_id=dag_id, run_ids=[run_id], task_ids=[task_id])
    in_run = states.get(run_id, {})
    if task_id not in in_run:
        # a mapped task's instances come as <task_id>_<map index>: its state is theirs if they agree
        mapped = {str(getattr(s, "value", s)) for key, s in in_run.items() if key.startswith(f"{task_id}_")}
        return mapped.pop() if len(mapped) == 1 else None
    state = in_run[task_id]
    return None if state is None else str(getattr(state, "value", state))


def _run_ended_at(context: Any) -> datetime | None:
    """When the callback's DAG run ended, from the context the scheduler gave it (aware, UTC)."""
    ended = getattr(context.get("dag_run"), "end_date", None)
    if not isinstance(ended, datetime):
        return None
    return ended if ended.tzinfo else ended.replace(tzinfo=UTC)


def announce_recovery(context: Any) -> None:
    """DAG success callback: if the DAG was failing, say it recovered, on the same route, and close
    its incident (with the review draft for a P1 or P2 incident).

    Closing deletes the events read here and no other: one recorded meanwhile opens the next one."""
    dag = context.get("dag")
    dag_id = getattr(dag, "dag_id", None) or context["dag_run"].dag_id
    stored = incident_store.read(procedure_for(dag_id))
    if stored is None:
        return
    incident = stored.incident
    run_id = context.get("run_id") or context["dag_run"].run_id
    ended_at = _run_ended_at(context)
    if incident.ended_before_latest_trouble(ended_at):
        # The DAG processor runs success callbacks when it can: this run's may come after a newer
        # run has failed. A success that ended before that failure does not resolve it.
        log.info(
            "%s run %s ended at %s, before the incident's latest failure: not a recovery",
            dag_id,
            run_id,
            ended_at.isoformat() if ended_at else "?",
        )
        return
    failed_task = incident.failing_task
    if failed_task and _task_state(dag_id, run_id, failed_task) != "success":
        # A run can succeed without doing the work that failed (a skip): that is no recovery.
        log.info("%s run %s succeeded but %s did not run: still failing", dag_id, run_id, failed_task)
        return
    if not incident.alerted:  # only retried tries that then succeeded: nobody was told
        incident_store.close(stored)
        return
    config = config_or_defaults()
    entry = procedure_for(dag_id)
    review = (
        write_review(config, incident, run_id) if entry.severity in config.alerts.review_severities else None
    )
    route(
        config,
        entry,
        recovery_message(
            dag_id=dag_id,
            run_id=run_id,
            failed_run_id=incident.failing_since_run,
            alert_name=entry.alert_name,
            runbook_url=runbook_url(config.alerts, dag_id, airflow_url()),
            severity=entry.severity,
            review=review,
        ),
    )
    tell_alertmanager(config, entry, summary=f"{dag_id} succeeded again in run {run_id}", resolved=True)
    incident_store.close(stored)


def write_review(config: StellarOpsConfig, incident: Incident, run_id: str) -> str | None:
    """The post-incident review draft (and the incident itself, as JSON) in S3; its URL."""
    from stellar_ops.adapters.common.connections import s3_store

    resolved_at = datetime.now(UTC)
    entry = procedure_for(incident.dag_id)
    book = f"{entry.runbook}: {runbook_link(entry.runbook, config.alerts.runbook_base_url)}"
    key = draft_key(config.backup.prefix, incident, resolved_at)
    try:
        store = s3_store(config)
        store.put_bytes(
            key,
            review_draft(incident, resolved_at=resolved_at, recovery_run=run_id, runbook=book).encode(),
            "text/markdown",
        )
        store.put_json(
            key.removesuffix(".md") + ".json",
            {**incident.as_dict(), "recovery_run": run_id, "resolved_at": resolved_at.isoformat()},
        )
    except StellarOpsError as exc:
        log.warning("the post-incident review draft of %s could not be written: %s", incident.dag_id, exc)
        return None
    return store.url(key)
