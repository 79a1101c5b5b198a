"""The alerting conventions every DAG shares: retries, timeouts, failure and recovery alerts.

- :func:`task_defaults` is the one ``default_args`` builder: retries >= 2 with exponential
  backoff and a cap, an ``execution_timeout``, a retry policy that fails at once on errors a retry
  cannot fix (bad config, a corrupt backup), and the failure notifier.
- :class:`StellarAlertNotifier` posts to the ``slack_alerts`` incoming webhook: DAG, task, run,
  try, severity and runbook.
- :func:`announce_recovery` (the DAG's ``on_success_callback``) posts a recovery message when a
  DAG succeeds after a failed run. The failing state is kept in a per-DAG Variable
  (``stellar_ops_alert_state__<dag_id>``), set by the notifier and cleared on recovery.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseNotifier
from airflow.sdk.definitions.retry_policy import ExceptionRetryPolicy, RetryAction, RetryRule

from stellar_ops.core.alerts import (
    DEFAULT_AIRFLOW_URL,
    failure_alert,
    failure_message,
    recovery_message,
    runbook_url,
)
from stellar_ops.core.errors import StellarOpsError
from stellar_ops.registry import StellarOpsConfig, procedure_for

log = logging.getLogger(__name__)

RETRY_DELAY_ENV = "STELLAR_OPS_RETRY_DELAY_SECONDS"
STATE_VARIABLE_PREFIX = "stellar_ops_alert_state__"
# Retrying cannot fix these: fail at once so the on-call engineer hears about it sooner.
NOT_RETRYABLE = [
    "stellar_ops.core.errors.ConfigError",
    "stellar_ops.core.errors.VerificationError",
    "stellar_ops.core.errors.BackupNotFoundError",
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
    }


def dag_callbacks(dag_id: str) -> dict[str, Any]:
    """DAG-level callbacks: plain functions (notifier objects break ``dags test``)."""
    procedure_for(dag_id)  # fail at parse time for a DAG missing from the taxonomy
    return {"on_success_callback": announce_recovery}


def _config_or_defaults() -> StellarOpsConfig:
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


def send(config: StellarOpsConfig, payload: dict[str, Any]) -> None:
    from stellar_ops.adapters.common.connections import AirflowResources

    AirflowResources(config).send_message(payload)


class StellarAlertNotifier(BaseNotifier):
    """Failure alert for one task of ``dag_id``, with the DAG's severity and runbook."""

    template_fields = ()

    def __init__(self, *, dag_id: str) -> None:
        super().__init__()
        self.dag_id = dag_id

    def notify(self, context: Any) -> None:
        config = _config_or_defaults()
        ti = context["ti"]
        try_number = int(ti.try_number or 1)
        alert = failure_alert(
            procedure_for(self.dag_id),
            config.alerts,
            task_id=ti.task_id,
            run_id=ti.run_id,
            error=context.get("exception"),
            try_number=try_number,
            max_tries=int(getattr(ti, "max_tries", 0) or 0) + 1,
            airflow_url=airflow_url(),
            log_url=getattr(ti, "log_url", None),
        )
        send(config, failure_message(replace(alert, error=_redact(alert.error))))
        _remember_failure(self.dag_id, ti.run_id, ti.task_id)


def _state_key(dag_id: str) -> str:
    return STATE_VARIABLE_PREFIX + dag_id


def _remember_failure(dag_id: str, run_id: str, task_id: str) -> None:
    from airflow.sdk import Variable

    try:
        Variable.set(_state_key(dag_id), json.dumps({"failing_since_run": run_id, "task": task_id}))
    except Exception as exc:  # noqa: BLE001 - the alert itself went out; recovery is best effort
        log.warning("could not record the failing state of %s: %s", dag_id, exc)


def _task_state(dag_id: str, run_id: str, task_id: str) -> str | None:
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    states = RuntimeTaskInstance.get_task_states(dag_id=dag_id, run_ids=[run_id], task_ids=[task_id])
    state = states.get(run_id, {}).get(task_id)
    return None if state is None else str(getattr(state, "value", state))


def announce_recovery(context: Any) -> None:
    """DAG success callback: if the DAG was failing, say it recovered and forget the failure."""
    from airflow.sdk import Variable

    dag = context.get("dag")
    dag_id = getattr(dag, "dag_id", None) or context["dag_run"].dag_id
    raw = Variable.get(_state_key(dag_id), default=None)
    if not raw:
        return
    try:
        state = json.loads(raw)
    except ValueError:
        state = {}
    run_id = context.get("run_id") or context["dag_run"].run_id
    failed_task = state.get("task")
    if failed_task and _task_state(dag_id, run_id, failed_task) != "success":
        # A run can succeed without doing the work that failed (a skip): that is no recovery.
        log.info("%s run %s succeeded but %s did not run: still failing", dag_id, run_id, failed_task)
        return
    config = _config_or_defaults()
    procedure = procedure_for(dag_id)
    send(
        config,
        recovery_message(
            dag_id=dag_id,
            run_id=run_id,
            failed_run_id=state.get("failing_since_run"),
            alert_name=procedure.alert_name,
            runbook_url=runbook_url(config.alerts, dag_id, airflow_url()),
        ),
    )
    Variable.delete(_state_key(dag_id))
