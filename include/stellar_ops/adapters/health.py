"""Task bodies of ``morning_health_check``: each runs one step of :mod:`stellar_ops.health.flow`."""

from __future__ import annotations

from typing import Any

from stellar_ops.adapters.common.runtime import checked, current_context, task_runtime
from stellar_ops.health import flow
from stellar_ops.health.results import CheckResult


@checked
def check(name: str) -> dict[str, Any]:
    """One check's result; a check never fails its task: a problem is its state."""
    return flow.check(task_runtime(), name).as_dict()


@checked
def summarize_health(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The one message and the metrics; the task fails, without a retry, when a check is critical."""
    rt = task_runtime()
    checks = [CheckResult.from_dict(r) for r in results]
    run_id = str(current_context()["run_id"])
    outcome = flow.summarize(rt, checks, run=f"{flow.DAG_ID} {run_id}")
    if outcome.critical:
        from airflow.sdk.exceptions import AirflowFailException

        # Retrying would send the summary again: the checks' state is the answer, not a glitch.
        raise AirflowFailException(flow.failure_reason(outcome, checks))
    return {"status": outcome.status, "checks": {c.name: c.status for c in checks}}
