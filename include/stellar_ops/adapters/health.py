"""Task bodies of ``morning_health_check``: each runs one step of :mod:`stellar_ops.health.flow`."""

from __future__ import annotations

from typing import Any

from stellar_ops.adapters.common.runtime import checked, current_context, task_logger, task_runtime
from stellar_ops.health import flow
from stellar_ops.health.results import CheckResult

log = task_logger()

# What a check hands summarize_health through XCom: its state and line, and its first items (the
# firing alerts, services, backups, mounts, domains grow with what is watched). The summary reads
# only the state and the line; the task log has every item.
ITEMS_SHOWN = 8
DETAIL_CHARS = 1000


@checked
def check(name: str) -> dict[str, Any]:
    """One check's result, its items cut to the first few; a check never fails its task: a problem
    is its state."""
    document = flow.check(task_runtime(), name).as_dict()
    items = document["items"]
    if len(items) > ITEMS_SHOWN:
        log.info("%s: %d items, the first %d in XCom: %s", name, len(items), ITEMS_SHOWN, items)
    document["items"] = items[:ITEMS_SHOWN]
    document["items_count"] = len(items)
    if len(document["detail"]) > DETAIL_CHARS:
        log.info("%s: %s", name, document["detail"])
        document["detail"] = document["detail"][: DETAIL_CHARS - 1] + "…"
    return document


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
